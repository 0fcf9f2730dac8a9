"""SFT and DPO on tiny fixtures: masks and packing, the SFT loss falls, resuming gives the same model, DPO's
preference accuracy rises, session rejections become pairs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from nanocode.checkpoint import load_model, save_model
from nanocode.model import GPT, ModelConfig
from training.dpo import ASK_INSTEAD, session_pairs, train_dpo
from training.dpo import from_preset as dpo_preset
from training.sft import from_preset as sft_preset
from training.sft import train_sft
from training.sft_data import ConversationBatches, pack, pair_rows, tokenize

SEQ = 192


def conversation(i: int) -> dict:
    name = f"f{i}"
    return {"messages": [
        {"role": "user", "content": f"where is {name} defined?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "let me grep for it\n"},
            {"type": "tool_call", "name": "Grep", "args": {"pattern": f"def {name}"}},
            {"type": "tool_result", "ok": True, "output": f"cli.py:{i}:def {name}(argv):"},
            {"type": "text", "text": f"it's in cli.py, line {i} :)"}]}]}


def pair(i: int) -> dict:
    conv = conversation(i)
    chosen = conv["messages"][1]
    rejected = {"role": "assistant", "content": [
        {"type": "text", "text": "GREAT QUESTION!! LET ME GREP\n"}, *chosen["content"][1:3],
        {"type": "text", "text": f"IT'S IN CLI.PY, LINE {i}!!"}]}
    return {"messages": conv["messages"][:1], "chosen": chosen, "rejected": rejected, "meta": {"fault": "shout"}}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("sftdpo")
    data = root / "synth"
    data.mkdir()
    write = lambda name, rows: (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))  # noqa: E731
    write("train.jsonl", [conversation(i) for i in range(1, 25)])
    write("val.jsonl", [conversation(i) for i in range(40, 46)])
    write("pairs_train.jsonl", [pair(i) for i in range(1, 25)])
    write("pairs_val.jsonl", [pair(i) for i in range(40, 48)])
    model = GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=SEQ), rngs=nnx.Rngs(0))
    base = save_model(root / "base", model, tiny_tokenizer)
    # pretraining token shards (random code-like documents) for the replay rows, made with this tokenizer
    from nanocode.tokenizer import SPECIAL_TOKENS
    from training.data.shards import file_sha256, write_meta, write_split
    rng = np.random.default_rng(0)
    docs = [rng.integers(len(SPECIAL_TOKENS), tiny_tokenizer.vocab_size, size=n) for n in (300, 50, 700, 120)]
    tokens = root / "tokens"
    tokens.mkdir()
    splits = {"train": write_split(tokens, "train", ((d, "code", 3 * len(d)) for d in docs), "uint16"),
              "val": write_split(tokens, "val", [], "uint16")}
    special = {t.strip("<|>"): tiny_tokenizer.special(t) for t in SPECIAL_TOKENS}
    write_meta(tokens, file_sha256(base / "tokenizer.json"), tiny_tokenizer.vocab_size, special, splits)
    return root, data, base


def test_replay_rows_come_first_and_train_every_token(fixtures, tiny_tokenizer):
    from training.loader import Loader
    root, _, base = fixtures
    examples, _ = tokenize([conversation(i) for i in range(1, 9)], tiny_tokenizer, SEQ)
    replay = Loader(root / "tokens", 1, SEQ, "train", fim_rate=0.5, seed=1, tokenizer=base / "tokenizer.json")
    b = ConversationBatches(examples, SEQ, 4, tiny_tokenizer.special("bos"), replay=replay, replay_rows=1).batch(2)
    assert b["tokens"].shape == (4, SEQ + 1) and np.array_equal(b["tokens"][0], replay.batch(2)[0])
    assert b["mask"][0].all() and not b["mask"][1:].all()  # pretraining rows count every token


def test_masks_and_packing(tiny_tokenizer):
    tok = tiny_tokenizer
    convs = [conversation(i) for i in range(1, 9)]
    examples, too_long = tokenize(convs + [conversation(10) | {"messages": [
        {"role": "user", "content": "x " * 400}, {"role": "assistant", "content": "ok"}]}], tok, SEQ)
    assert too_long == 1 and len(examples) == 8
    tokens, mask = pack(examples, np.arange(8), SEQ, tok.special("bos"))
    assert tokens.shape[1] == SEQ + 1 and mask.shape == (len(tokens), SEQ)
    assert len(tokens) < 8  # several conversations share a row
    bos = tok.special("bos")
    assert all(row[0] == bos for row in tokens)  # a row begins with a conversation, never mid-way
    # the targets the loss counts are exactly what the assistant wrote, conversation after conversation
    trained = "".join(tok.decode(row[1:][m == 1]) for row, m in zip(tokens, mask))
    for i in range(1, 9):
        assert trained.count(f"<|tool_call_start|>Grep<|tool_arg|>pattern<|tool_val|>def f{i}<|tool_call_end|>"
                             f"it's in cli.py, line {i} :)<|assistant_end|>") == 1
    assert "where is" not in trained and "def f1(argv)" not in trained  # user turns and tool results
    assert int(mask.sum()) == sum(int(e.mask[1:].sum()) for e in examples)  # padding trains nothing
    # batches are a pure function of the step, and processes take disjoint rows
    b = ConversationBatches(examples, SEQ, 2, bos, seed=1)
    assert np.array_equal(b.batch(3)["tokens"], ConversationBatches(examples, SEQ, 2, bos, seed=1).batch(3)["tokens"])
    p0 = ConversationBatches(examples, SEQ, 1, bos, seed=1, process_index=0, process_count=2).batch(0)["tokens"]
    p1 = ConversationBatches(examples, SEQ, 1, bos, seed=1, process_index=1, process_count=2).batch(0)["tokens"]
    assert np.array_equal(np.concatenate([p0, p1]), b.batch(0)["tokens"])


def test_pair_rows_mask_only_the_response(tiny_tokenizer):
    tok = tiny_tokenizer
    rows, too_long = pair_rows([pair(3)], tok, SEQ)
    assert too_long == 0 and len(rows) == 1
    chosen = tok.decode(rows.chosen[0][1:][rows.chosen_mask[0] == 1])
    rejected = tok.decode(rows.rejected[0][1:][rows.rejected_mask[0] == 1])
    assert chosen.startswith("let me grep for it") and chosen.endswith("line 3 :)<|assistant_end|>")
    assert rejected.startswith("GREAT QUESTION!!") and "where is" not in chosen + rejected


def test_project_notes_head_the_prompt_and_are_never_trained_on(tiny_tokenizer):
    tok, notes = tiny_tokenizer, "Notes from AGENTS.md:\n- use 4 spaces"
    plain, _ = pair_rows([pair(3)], tok, SEQ)
    with_notes, _ = pair_rows([{**pair(3), "meta": {"notes": notes}}], tok, SEQ)
    assert tok.decode(with_notes.chosen[0][2:]).startswith(notes + "\n\nwhere is f3")
    assert with_notes.chosen_mask.sum() == plain.chosen_mask.sum() > 0
    assert with_notes.rejected_mask.sum() == plain.rejected_mask.sum() > 0
    (a,), _ = tokenize([conversation(3)], tok, SEQ)
    (b,), _ = tokenize([{**conversation(3), "meta": {"notes": notes}}], tok, SEQ)
    assert len(b.ids) == len(a.ids) + len(tok.encode(notes + "\n\n")) and b.mask.sum() == a.mask.sum()


def test_sft_loss_falls_and_resume_is_exact(fixtures, tmp_path, monkeypatch):
    root, data, base = fixtures
    cfg = sft_preset("test", steps=24, save_every=8, eval_every=12, lr_frac=1.0, replay=0.25)
    summary = train_sft(cfg, base=base, data=data, out=tmp_path / "sft", tokens=root / "tokens")
    first, final = summary["first"]["val_loss"], summary["final"]["val_loss"]
    assert final < 0.6 * first, (first, final)
    assert summary["final"]["sampled"] >= 1 and "tool_call_validity" in summary["final"]
    meta = load_model(tmp_path / "sft" / "model")[2]["meta"]
    assert meta["stage"] == "sft" and meta["project_notes"] is False  # none of these conversations had notes
    # The same run killed after step 10 and started again: it resumes from the step-8 checkpoint and
    # ends with exactly the same model.
    import training.train_step as ts
    real = ts.make_train_step

    def dying(*a, **k):
        step, calls = real(*a, **k), []

        def wrapped(state, batch):
            calls.append(1)
            if len(calls) > 10:
                raise KeyboardInterrupt("simulated kill")
            return step(state, batch)
        return wrapped
    monkeypatch.setattr(ts, "make_train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train_sft(cfg, base=base, data=data, out=tmp_path / "again", tokens=root / "tokens")
    monkeypatch.setattr(ts, "make_train_step", real)
    resumed = train_sft(cfg, base=base, data=data, out=tmp_path / "again", tokens=root / "tokens")
    assert resumed["final"]["val_loss"] == pytest.approx(final, rel=1e-5)
    a = nnx.state(load_model(tmp_path / "sft" / "model")[0])
    b = nnx.state(load_model(tmp_path / "again" / "model")[0])
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(jax_leaves(a), jax_leaves(b)))


def jax_leaves(state):
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def write_sessions(home: Path) -> dict:
    """Two rejection records as agent/session.py writes them (one without a chosen step) and a broken line."""
    prefs = home / "sessions" / "preferences"
    prefs.mkdir(parents=True)
    call = {"type": "tool_call", "name": "Bash", "args": {"command": "rm -rf build"}}
    note = {"messages": [{"role": "user", "content": "clean up"}],
            "rejected": {"role": "assistant", "content": [{"type": "text", "text": "removing it\n"}, call]},
            "chosen": None, "note": "", "session": "s1"}
    accepted = dict(note, chosen={"role": "assistant", "content": [{"type": "text", "text": "listing first\n"},
                                                                   {"type": "tool_call", "name": "Bash",
                                                                    "args": {"command": "ls build"}}]})
    (prefs / "s1.jsonl").write_text(json.dumps(note) + "\n" + json.dumps(accepted) + "\nnot json\n")
    return note


def test_dpo_preference_accuracy_rises(fixtures, tmp_path, monkeypatch):
    root, data, base = fixtures
    write_sessions(tmp_path)
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path))
    summary = train_dpo(dpo_preset("test", steps=20, lr_frac=0.5, beta=0.5, from_sessions=True), sft=base,
                        data=data, out=tmp_path / "dpo")
    assert summary["session_pairs"] == 2
    before, after = summary["before"], summary["after"]
    assert before["val_accuracy"] == pytest.approx(0.5, abs=0.15)  # policy = reference: (near) ties
    assert after["val_accuracy"] >= 0.9 and after["val_margin"] > 0.5
    train = summary["train"]
    assert train[-1]["accuracy"] > train[0]["accuracy"] and train[-1]["loss"] < train[0]["loss"]
    assert train[-1]["reward_chosen"] > train[-1]["reward_rejected"]
    assert load_model(tmp_path / "dpo" / "model")[2]["meta"]["stage"] == "dpo"
    assert (tmp_path / "models" / "dpo").resolve() == (tmp_path / "dpo" / "model").resolve()  # chat finds it


def test_session_rejections_become_pairs(tmp_path, tiny_tokenizer):
    note = write_sessions(tmp_path)
    pairs, bad = session_pairs(tmp_path / "sessions" / "preferences")
    assert bad == 1 and len(pairs) == 2
    assert pairs[0]["chosen"]["content"][-1]["text"] == ASK_INSTEAD
    assert pairs[0]["chosen"]["content"][0] == note["rejected"]["content"][0]  # the turn so far is kept
    rows, _ = pair_rows(pairs, tiny_tokenizer, SEQ)
    rejected = tiny_tokenizer.decode(rows.rejected[0][1:][rows.rejected_mask[0] == 1])
    assert rejected == "removing it\n<|tool_call_start|>Bash<|tool_arg|>command<|tool_val|>rm -rf build<|tool_call_end|>"


MULTI = """
import json, sys
from pathlib import Path
from training.sft import from_preset, train_sft
from training.dpo import from_preset as dpo_preset, train_dpo
root, dbs, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
s = train_sft(from_preset("test", steps=3, device_batch=dbs, eval_every=0, eval_samples=0, log_every=1),
              base=root / "base", data=root / "synth", out=out / "sft")
d = train_dpo(dpo_preset("test", steps=3, device_batch=dbs, eval_every=0, log_every=1),
              sft=root / "base", data=root / "synth", out=out / "dpo")
print("RESULT", json.dumps({"sft": [l for _, l in s["train_loss"]], "dpo": [h["loss"] for h in d["train"]]}))
"""


def test_two_devices_match_one(fixtures, tmp_path):
    """Data parallel over 2 (CPU) devices computes the same steps as one device taking the whole batch."""
    root, _, _ = fixtures
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", MULTI, str(root), "2", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    two = json.loads(run.stdout.split("RESULT ", 1)[1])
    import jax
    assert jax.device_count() == 1  # this process: one device, 4 rows per micro-step
    s = train_sft(sft_preset("test", steps=3, device_batch=4, eval_every=0, eval_samples=0, log_every=1),
                  base=root / "base", data=root / "synth", out=tmp_path / "one" / "sft")
    d = train_dpo(dpo_preset("test", steps=3, device_batch=4, eval_every=0, log_every=1),
                  sft=root / "base", data=root / "synth", out=tmp_path / "one" / "dpo")
    assert np.allclose([loss for _, loss in s["train_loss"]], two["sft"], rtol=2e-4)
    assert np.allclose([h["loss"] for h in d["train"]], two["dpo"], rtol=2e-4)


def malformed_pair(i: int) -> dict:
    """A seeded `malformed` draft (training/synth/episode.py): the draft's first call lacks its argument,
    gets an error, says so and makes the well-formed call the revision made."""
    conv = conversation(i)
    chosen = conv["messages"][1]
    good_call = chosen["content"][1]
    rejected = {"role": "assistant", "content": [
        chosen["content"][0], {"type": "tool_call", "name": "Grep", "args": {}},
        {"type": "tool_result", "ok": False, "output": "Grep is missing its required argument 'pattern'."},
        {"type": "text", "text": "oops, wrong call, fixing it\n"}, good_call, *chosen["content"][2:]]}
    return {"messages": conv["messages"][:1], "chosen": chosen, "rejected": rejected, "meta": {"fault": "malformed"}}


def test_pair_differing_at_a_call_is_cut_after_that_call(tiny_tokenizer):
    """The pair is about the malformed call against the well-formed one: the retry that follows it in the
    draft (the same good call again) must not be scored as rejected."""
    tok = tiny_tokenizer
    rows, _ = pair_rows([malformed_pair(3)], tok, SEQ)
    chosen = tok.decode(rows.chosen[0][1:][rows.chosen_mask[0] == 1])
    rejected = tok.decode(rows.rejected[0][1:][rows.rejected_mask[0] == 1])
    assert chosen == "let me grep for it\n<|tool_call_start|>Grep<|tool_arg|>pattern<|tool_val|>def f3<|tool_call_end|>"
    assert rejected == "let me grep for it\n<|tool_call_start|>Grep<|tool_call_end|>"
    # a pair that differs in prose keeps both whole responses
    rows, _ = pair_rows([pair(3)], tok, SEQ)
    assert tok.decode(rows.rejected[0][1:][rows.rejected_mask[0] == 1]).endswith("LINE 3!!<|assistant_end|>")


def test_chosen_nll_term_adds_the_mean_token_nll(fixtures, tiny_tokenizer):
    """loss(nll=w) - loss(nll=0) is w times each pair's mean per-token NLL of its chosen response."""
    import jax.numpy as jnp

    from training.dpo import dpo_terms
    from training.losses import token_losses
    _, _, base = fixtures
    model = load_model(base)[0]
    graphdef, params = nnx.split(model)
    rows, _ = pair_rows([pair(i) for i in range(1, 4)] + [malformed_pair(5)], tiny_tokenizer, SEQ)
    batch = {"chosen": jnp.asarray(rows.chosen), "rejected": jnp.asarray(rows.rejected),
             "chosen_mask": jnp.asarray(rows.chosen_mask), "rejected_mask": jnp.asarray(rows.rejected_mask),
             "ref_chosen": jnp.zeros(len(rows)), "ref_rejected": jnp.zeros(len(rows))}
    plain, plain_sums = dpo_terms(graphdef, 0.1, nll=0.0)(params, batch)
    mixed, sums = dpo_terms(graphdef, 0.1, nll=0.5)(params, batch)
    tok_nll = token_losses(model, batch["chosen"][:, :-1], batch["chosen"][:, 1:])
    mask = rows.chosen_mask.astype(np.float32)
    mean_nll = np.asarray((tok_nll * mask).sum(-1)) / mask.sum(-1)
    assert float(mixed - plain) == pytest.approx(0.5 * mean_nll.sum(), rel=1e-4)
    assert float(sums["nll_chosen"]) == pytest.approx(mean_nll.sum(), rel=1e-4)
    assert float(sums["dpo_loss"]) == pytest.approx(float(plain_sums["dpo_loss"]), rel=1e-5)
    with pytest.raises(Exception, match="--nll"):
        dpo_preset("cpu", nll=-1.0)


def test_chat_token_logits_start_from_the_mean_of_ordinary_tokens(tiny_tokenizer):
    """Pretraining saturates the chat tokens' logits at the soft-cap floor (-14.94 of -15 in the first H200
    run), where no gradient flows: SFT from a base model moves their head columns to the ordinary mean."""
    from training.sft import CHAT_TOKENS, reset_chat_tokens
    tok = tiny_tokenizer
    model = GPT(ModelConfig(depth=1, vocab_size=tok.vocab_size, seq_len=16), rngs=nnx.Rngs(0))
    ids = [tok.special(name) for name in CHAT_TOKENS]
    head = np.asarray(model.lm_head[...]).copy()
    head[:, ids] = -50.0  # what long pretraining does to tokens it never sees as targets
    model.lm_head[...] = head
    wte = np.asarray(model.wte[...]).copy()
    reset_chat_tokens(model, tok)
    after = np.asarray(model.lm_head[...])
    ordinary = [i for i in range(tok.vocab_size) if i not in tok.special_ids]
    np.testing.assert_allclose(after[:, ids], np.repeat(head[:, ordinary].mean(1, keepdims=True), len(ids), 1),
                               rtol=1e-5, atol=1e-6)
    others = [i for i in range(head.shape[1]) if i not in ids]
    np.testing.assert_array_equal(after[:, others], head[:, others])  # bos, FIM tokens, text: untouched
    np.testing.assert_array_equal(np.asarray(model.wte[...]), wte)   # inputs keep their distinct random rows
