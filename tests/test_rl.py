"""RL on verifiable agent tasks (training/rl.py): reward, advantages, rows, and the stage on a tiny model."""
import json
from dataclasses import replace

import numpy as np
import pytest
from flax import nnx

from nanocode.checkpoint import save_model
from nanocode.model import GPT, ModelConfig
from nanocode.template import render_conversation
from training.common import StageError
from training.eval.agent_tasks import AgentTask, Outcome, Step
from training.eval.rollout import Rollout
from training.rl import advantages, from_preset, reward, train_rl, training_rows

ANSWER = {"role": "assistant", "content": [{"type": "text", "text": "want me to grep for f first?"}]}


def rollout(task="t", success=True, malformed=0, repeats=0, end="done", messages=None, r=0.0):
    messages = messages if messages is not None else [{"role": "user", "content": "where is f?"}, ANSWER]
    return Rollout(task, "locate", 0, success, "", messages, "", end, [], malformed, repeats, 5, 0.1, r)


def test_reward_is_success_minus_penalties_and_a_small_soul_term():
    cfg = from_preset("test")
    assert reward(rollout(), cfg) == 1.0  # the answer keeps every SOUL rule
    assert reward(rollout(success=False), cfg) == 0.0
    assert reward(rollout(malformed=2, repeats=1, end="max_steps"), cfg) == pytest.approx(1 - 0.2 - 0.2 - 0.1)
    shouting = [{"role": "user", "content": "where is f?"},
                {"role": "assistant", "content": [{"type": "text", "text": "GREAT QUESTION!! IT IS IN A.PY"}]}]
    soul = reward(rollout(messages=shouting), cfg)
    assert 0.9 < soul < 1.0  # a few rules broken: a small cut, never more than soul_weight
    assert reward(rollout(messages=shouting), replace(cfg, soul_weight=0.0)) == 1.0


def test_advantages_compare_a_task_with_its_own_samples():
    rs = [rollout("a", r=1.0), rollout("a", r=0.0), rollout("b", r=1.0), rollout("b", r=1.0)]
    assert advantages(rs, "grpo") == [0.5, -0.5, 0.0, 0.0]  # a group that all succeeded teaches nothing
    rs[1].success = False
    assert advantages(rs, "rft") == [1.0, 0.0, 1.0, 1.0]


def test_training_rows_mark_exactly_the_tokens_the_model_wrote(tiny_tokenizer):
    rs = [rollout(), rollout(success=False)]
    tokens, mask, weight = training_rows(rs, [1.0, 0.0], tiny_tokenizer, 512)
    ids, m = render_conversation(rs[0].messages, tiny_tokenizer)
    assert tokens.shape[0] == 1 and weight.tolist() == [1.0]  # zero-weight rows are not trained on
    assert tokens.shape[1] - 1 == 16 if len(ids) <= 17 else (tokens.shape[1] - 1) & (tokens.shape[1] - 2) == 0
    assert tokens[0, :len(ids)].tolist() == ids
    assert mask[0, :len(ids) - 1].tolist() == m[1:]  # mask[t] belongs to target t + 1
    assert mask[0, len(ids) - 1:].sum() == 0


# --- the stage on a trivial family --------------------------------------------------------------------------

def short_tasks(round_index, n, seed):
    """A trivial family: succeed by ending the turn within a few characters and without a tool call. A fresh
    model's near-flat samples end it in time in about one reply in twenty; RL has to make that the rule."""
    def check(ws, answer, calls):
        ok = len(answer) <= 10 and not calls
        return Outcome(ok, "short, no calls" if ok else f"{len(answer)} characters, {len(calls)} calls")
    return [AgentTask(f"short-{seed}-{i}", "short", f"answer in one word #{i}", {}, (Step(None, text="ok"),),
                      check) for i in range(n)]


@pytest.fixture(scope="module")
def start_model(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("rl")
    model = GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=256), rngs=nnx.Rngs(0))
    return save_model(root / "sft", model, tiny_tokenizer)


def test_success_rises_over_a_few_rounds_and_the_model_ships(start_model, tmp_path):
    cfg = replace(from_preset("test"), rounds=4, tasks=8, samples=8, max_steps=1, max_reply_tokens=12,
                  lr_frac=1.0, soul_weight=0.0, device_batch=64, eval_per_kind=4, method="rft")
    summary = train_rl(cfg, start_model, tmp_path / "run", make_tasks=short_tasks)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rates = [r["success_rate"] for r in log if "round" in r and r.get("event") is None]
    assert len(rates) == 4 and all(0 < r < 1 for r in rates) and rates[-1] > rates[0]  # sampled, temperature 1
    # Greedy on the held-out tasks: from none to all (0.0 -> 1.0 measured). The sampled rate moves less in four
    # rounds (0.09, 0.12, 0.12, 0.11): a fresh model's temperature-1 distribution is nearly flat, and the
    # head's learning rate moves a logit by at most ~1 per step. (grpo, same settings: greedy 0.0 -> 0.0 in
    # four rounds; its comparison with rft on real models is in training/LOG.md.)
    assert summary["first"]["success_rate"] == 0.0
    assert summary["final"]["success_rate"] >= 0.5
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert train_rl(cfg, start_model, tmp_path / "run", make_tasks=short_tasks) == summary  # complete: skipped


def test_a_killed_run_resumes_with_the_same_next_round(start_model, tmp_path):
    cfg = replace(from_preset("test"), rounds=2, tasks=2, samples=2, max_steps=1, max_reply_tokens=8,
                  soul_weight=0.0)
    train_rl(cfg, start_model, tmp_path / "whole", make_tasks=short_tasks)

    def dies_in_round_1(round_index, n, seed):
        if round_index == 1:
            raise KeyboardInterrupt  # the kill, after round 0's checkpoint
        return short_tasks(round_index, n, seed)
    with pytest.raises(KeyboardInterrupt):
        train_rl(cfg, start_model, tmp_path / "killed", make_tasks=dies_in_round_1)
    train_rl(cfg, start_model, tmp_path / "killed", make_tasks=short_tasks)

    def rounds(run):
        rows = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        return {r["round"]: (r["success_rate"], r["mean_reward"], r["loss"]) for r in rows
                if r.get("event") is None and "loss" in r}
    assert rounds("killed")[2] == rounds("whole")[2]


def test_max_minutes_ends_the_run_early_with_a_model(start_model, tmp_path):
    cfg = replace(from_preset("test"), rounds=5, tasks=2, samples=2, max_steps=1, max_reply_tokens=8,
                  soul_weight=0.0, max_minutes=1e-6)  # past after the first round
    summary = train_rl(cfg, start_model, tmp_path / "run", make_tasks=short_tasks)
    assert summary["rounds"] == 1 and summary["planned_rounds"] == 5 and summary["final"]["round"] == 1
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_round_tasks_use_training_phrasings_and_the_held_out_ones_do_not():
    from training.rl import held_out_tasks, round_tasks
    from training.synth import phrasing
    cfg = from_preset("test", kinds="locate,read,explore", tasks=6)
    train, held_out = round_tasks(cfg, 0), held_out_tasks(cfg)
    held = phrasing.held_out_ids()  # of the banks used so far
    assert len(train) == 6 and not any(t.pattern in held for t in train if t.pattern)
    assert held_out and all(t.pattern in held for t in held_out)


def test_bad_settings_are_refused_clearly(start_model, tmp_path):
    with pytest.raises(StageError, match="--method must be grpo or rft"):
        from_preset("test", method="ppo")
    with pytest.raises(StageError, match="give --samples >= 2"):
        from_preset("test", samples=1, method="grpo")
    with pytest.raises(StageError, match="unknown task kind"):
        train_rl(from_preset("test", kinds="locate,teleport"), start_model, tmp_path / "x")
    with pytest.raises(StageError, match="unknown preset"):
        from_preset("huge")
    with pytest.raises(StageError, match="--max-minutes must be >= 0"):
        from_preset("test", max_minutes=-1)
    assert np.isfinite(from_preset("gpu").lr_frac)
