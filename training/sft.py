"""`nanocode train sft`: supervised fine-tuning on tool-use conversations, top to bottom.

    nanocode train sft --preset cpu                  # from the newest base model, on data/synth
    nanocode train sft --base runs/base-d12/model --data data/synth --out runs/sft-d12

From a base model directory: the loss counts only the assistant's tokens (prose, tool calls,
<|assistant_end|>; the DESIGN.md mask), conversations are packed into rows with padding
(training/sft_data.py), and a `--replay` share of every batch is pretraining rows (code and
fill-in-the-middle) so the model keeps its base ability. Every --eval-every steps: the validation loss on
held-out conversations and the tool-call validity of sampled turns (greedy replies to held-out requests,
parsed by nanocode/template.py: a call that does not parse, names no real tool or lacks an argument is
invalid).

It reuses pretraining's machinery (training/train_step.py's compiled step, optim.py, mesh.py,
checkpointing.py), so it is resumable and multi-device in exactly the same way: rerun the same command on
the same --out and it continues from the newest complete checkpoint with the same batches.

    --out/ckpt/  --out/log.jsonl  --out/model/  --out/complete.json   (as pretraining)
The finished model is also linked as $NANOCODE_HOME/models/<out name>, where `nanocode chat` looks.
"""
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

COMPLETE = "complete.json"


class SFTError(RuntimeError):
    """A problem the user can fix (missing data or model, bad flags, an incompatible --out)."""


@dataclass(frozen=True)
class SFTConfig:
    seq_len: int = 0                  # 0: the base model's context
    device_batch: int = 8             # rows per device per micro-step
    batch_rows: int = 0               # rows per optimiser step over all devices (0: one micro-step's worth)
    epochs: float = 2.0               # passes over the conversations (sets the steps when --steps is 0)
    steps: int = 0                    # optimiser steps (0: from --epochs)
    lr_frac: float = 0.1              # the base learning rates times this: the model is trained already, and
                                      # nanochat's chat SFT likewise starts from a fraction of its base rates
    warmdown_ratio: float = 0.5       # linear decay to zero over the last half (the start is constant)
    replay: float = 0.125             # share of each batch's rows that are pretraining rows (0 to turn off)
    fim_rate: float = 0.5             # fill-in-the-middle share of the replay rows, as in pretraining
    eval_every: int = 100             # validation loss + tool-call validity (0: only at start and end)
    eval_samples: int = 16            # held-out requests sampled for tool-call validity
    sample_tokens: int = 96
    save_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    remat: str = "none"
    fsdp: bool = False

    def __post_init__(self):
        for name in ("device_batch", "keep_checkpoints", "log_every", "sample_tokens"):
            if getattr(self, name) < 1:
                raise SFTError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("seq_len", "batch_rows", "steps", "eval_every", "eval_samples", "save_every"):
            if getattr(self, name) < 0:
                raise SFTError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.replay < 1 or not 0 <= self.fim_rate <= 1 or not 0 <= self.warmdown_ratio <= 1:
            raise SFTError("--replay must be in [0, 1), --fim-rate and --warmdown-ratio in [0, 1]")
        if self.epochs <= 0 and self.steps == 0:
            raise SFTError("give --epochs > 0 or --steps")
        if not 0 < self.lr_frac <= 1:
            raise SFTError(f"--lr-frac must be in (0, 1], got {self.lr_frac}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "test": dict(device_batch=4, steps=24, eval_every=8, eval_samples=4, sample_tokens=24, save_every=8,
                 log_every=4, replay=0.0, lr_frac=1.0),
    "cpu": dict(device_batch=8, epochs=2.0, eval_every=50, eval_samples=12, save_every=50, log_every=5),
    # 16 rows a step, not 64: the chat tokens are learnt per optimiser step, and 44 steps of 64 rows (the first
    # H200 speedrun) left the tool-call rate at 0; 175 steps of 16 rows over the same data (with reset_chat_tokens) reached 1.0.
    "gpu": dict(device_batch=16, batch_rows=16, epochs=3.0, eval_every=50, eval_samples=32, remat="dots"),
}
RESUMABLE_CHANGES = {"eval_every", "eval_samples", "sample_tokens", "save_every", "keep_checkpoints", "log_every",
                     "remat", "fsdp", "device_batch"}


def from_preset(name: str, **overrides) -> SFTConfig:
    if name not in PRESETS:
        raise SFTError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(SFTConfig)}
    bad = sorted(k for k in overrides if k not in known)
    if bad:
        raise SFTError(f"unknown SFT options {bad}")
    cfg = SFTConfig(**PRESETS[name])
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **given) if given else cfg


def optimizer_config(cfg, depth: int):
    """Pretraining's TrainConfig, for make_optimizer: the same Muon + AdamW split and depth scaling, the base
    learning rates times lr_frac, no warmup (the model is trained already), a final linear decay to zero.
    Only optimiser fields are set; batch fields keep their defaults (make_optimizer does not read them)."""
    from training.config import TrainConfig
    base = TrainConfig()
    return replace(base, depth=depth, matrix_lr=base.matrix_lr * cfg.lr_frac,
                   embedding_lr=base.embedding_lr * cfg.lr_frac, unembedding_lr=base.unembedding_lr * cfg.lr_frac,
                   warmup_ratio=0.0, warmdown_ratio=cfg.warmdown_ratio, final_lr_frac=0.0, remat=cfg.remat,
                   fsdp=cfg.fsdp, seed=cfg.seed)


def newest_model(pattern: str) -> Path | None:
    """The newest finished model of a stage under $NANOCODE_HOME/runs (e.g. 'base-*')."""
    from nanocode.lookup import nanocode_home
    found = [p / "model" for p in (nanocode_home() / "runs").glob(pattern) if (p / "model" / "config.json").is_file()]
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime) if found else None


def publish(model_dir: Path, name: str) -> Path:
    """Link a finished model into $NANOCODE_HOME/models/<name>, where `nanocode chat` looks for the newest."""
    from nanocode.lookup import models_dir
    link = models_dir() / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if not link.is_symlink():
            return link  # a real directory someone put there: leave it alone
        link.unlink()
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return link


def check_resume(saved: dict, now: dict, out: Path, changeable: set[str]) -> None:
    diff = {k: (saved.get(k), now[k]) for k in now if k not in changeable and saved.get(k) != now[k]}
    if diff:
        listed = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise SFTError(f"{out} holds a run with different settings ({listed}); rerun with the same flags to "
                       "resume it, or pass a new --out to start another run")


def tool_call_validity(sampler, conversations: list[dict], tok, max_tokens: int) -> dict:
    """Greedy replies to held-out requests, up to the first tool call or the end of the turn, parsed by
    nanocode/template.py (the agent's parser). tool_call_validity: the share that are well formed (no
    unknown tool, missing argument, stray special token, ...); a reply the token budget cut off counts as
    neither. call_rate: the share that make a well-formed tool call."""
    from nanocode.template import ToolCallError, ToolCallPart, parse_assistant, render_prompt, stop_ids
    prompts = [render_prompt(c["messages"][:1], tok) for c in conversations]
    prompts = [p for p in prompts if len(p) + max_tokens < sampler.config.seq_len]
    if not prompts:
        return {}
    outs = sampler.generate_batch(prompts, max_tokens, temperature=0.0, stop=stop_ids(tok))
    ok = calls = truncated = 0
    for ids in outs:
        try:
            parts, _ = parse_assistant(ids, tok, allow_results=False)
        except ToolCallError as e:
            truncated += e.kind == "truncated"
            continue
        ok += 1
        calls += any(isinstance(p, ToolCallPart) for p in parts)
    judged = len(outs) - truncated
    return {"sampled": len(outs), "truncated": truncated, "call_rate": calls / len(outs),
            "tool_call_validity": ok / judged if judged else None}


# The chat and tool-call tokens never occur in pretraining text (only <|bos|> and the FIM tokens do), so
# pretraining pushes their logits down until the soft-cap saturates: in the first H200 speedrun (depth 8,
# 1,350 steps) all eight sat at -14.94 of the cap's -15, ranked ~16,300th of 16,384, where tanh passes almost
# no gradient. 44 SFT steps then left the call rate at 0 on both held-out synth requests and agent tasks (the
# model wrote "let me find it first" and went on in prose). Giving those rows the mean of the ordinary
# tokens' head columns (Hewitt 2021, "Initializing new word embeddings for pretrained language models") starts
# them at an average token's logit, where the gradient flows. Their input embeddings are left alone: never
# seen, they still hold their random initialisation, which keeps the ten tokens distinct.
CHAT_TOKENS = ("user_start", "user_end", "assistant_start", "assistant_end", "tool_call_start", "tool_call_end",
               "tool_arg", "tool_val", "tool_result_start", "tool_result_end")


def reset_chat_tokens(model, tok) -> None:
    """Set the output head columns of CHAT_TOKENS to the mean of the ordinary tokens' columns."""
    import jax.numpy as jnp
    import numpy as np
    ids = np.array([tok.special(name) for name in CHAT_TOKENS])
    ordinary = np.setdiff1d(np.arange(tok.vocab_size), np.array(sorted(tok.special_ids)))
    head = model.lm_head[...]  # [C, V] (training layout)
    model.lm_head[...] = head.at[:, ids].set(jnp.mean(head[:, ordinary], axis=1, keepdims=True))


def train_sft(cfg: SFTConfig, base: Path | None = None, data: Path | None = None, out: Path | None = None,
              tokens: Path | None = None, coordinator: str | None = None, num_processes: int | None = None,
              process_id: int | None = None, console=None) -> dict:
    """Fine-tune (or resume); returns the summary also written to complete.json."""
    import jax
    import numpy as np
    from flax import nnx
    from rich.console import Console

    from nanocode import runtime
    from nanocode.lookup import nanocode_home
    from nanocode.checkpoint import CheckpointError, load_model, save_model
    from training import mesh as meshlib
    from training.checkpointing import Checkpoints
    from training.optim import lr_multiplier, make_optimizer
    from training.sft_data import ConversationBatches, all_rows, tokenize
    from training.synth.driver import read_jsonl
    from training.train_step import abstract_state, init_state, lm_loss_fn, make_train_step

    console = console or Console()
    home = nanocode_home()
    meshlib.init_distributed(coordinator, num_processes, process_id)
    runtime.setup_jax()
    primary = jax.process_index() == 0

    # --- inputs: the base model and the conversations ------------------------------------------------
    base = Path(base).expanduser() if base else newest_model("base-*")
    if base is None:
        raise SFTError(f"no base model found under {home / 'runs'}; train one with `nanocode train base` or "
                       "pass --base DIR")
    try:
        model, tok, info = load_model(base)
    except CheckpointError as e:
        raise SFTError(str(e)) from e
    model_cfg = info["config"]
    if info.get("meta", {}).get("stage") == "base":
        reset_chat_tokens(model, tok)
    out = Path(out or home / "runs" / f"sft-d{model_cfg.depth}").expanduser().absolute()
    if (out / COMPLETE).is_file():
        summary = json.loads((out / COMPLETE).read_text())
        console.print(f"[green]SFT in {out} is already complete[/] (model in {out / 'model'}); pass a new --out "
                      "to train another")
        return summary
    data = Path(data or home / "data" / "synth").expanduser()
    try:
        train_convs, val_convs = read_jsonl(data / "train.jsonl"), read_jsonl(data / "val.jsonl")
    except FileNotFoundError as e:
        raise SFTError(f"{e} (--data {data})") from e
    seq_len = cfg.seq_len or model_cfg.seq_len
    if seq_len > model_cfg.seq_len:
        raise SFTError(f"--seq-len {seq_len} is longer than the base model's context {model_cfg.seq_len}")
    train_ex, train_long = tokenize(train_convs, tok, seq_len)
    val_ex, val_long = tokenize(val_convs, tok, seq_len)
    if train_long > len(train_convs) // 2:
        console.print(f"[yellow]{train_long} of {len(train_convs)} conversations are longer than {seq_len} tokens "
                      "and are left out; a longer --seq-len keeps them[/]")

    # --- batches: devices, accumulation, replay ------------------------------------------------------
    mesh = meshlib.make_mesh()
    n_dev = mesh.devices.size
    micro_rows = cfg.device_batch * n_dev
    batch_rows = cfg.batch_rows or micro_rows
    if batch_rows % micro_rows:
        raise SFTError(f"--batch-rows {batch_rows} is not a multiple of one micro-step ({cfg.device_batch} rows "
                       f"x {n_dev} devices = {micro_rows})")
    accum = batch_rows // micro_rows
    local_rows = batch_rows // jax.process_count()
    replay_rows = round(cfg.replay * local_rows)
    replay = None
    if replay_rows:
        from training.loader import Loader
        token_dir = Path(tokens or home / "data" / "tokens").expanduser()
        try:
            replay = Loader(token_dir, replay_rows, seq_len, "train", fim_rate=cfg.fim_rate, seed=cfg.seed + 1,
                            process_index=jax.process_index(), process_count=jax.process_count(),
                            tokenizer=base / "tokenizer.json")
        except (FileNotFoundError, ValueError) as e:
            raise SFTError(f"replay rows need the pretraining token shards ({e}); pass --tokens DIR, or --replay 0 "
                           "to fine-tune on conversations only") from e
    batches = ConversationBatches(train_ex, seq_len, local_rows, tok.special("bos"), seed=cfg.seed,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  replay=replay, replay_rows=replay_rows)
    num_steps = cfg.steps or max(1, math.ceil(cfg.epochs * batches.steps_per_epoch()))

    # --- state: the base parameters + a fresh optimiser, or the newest checkpoint ---------------------
    opt_cfg = optimizer_config(cfg, model_cfg.depth)
    optimizer = make_optimizer(opt_cfg, num_steps)
    graphdef, params = nnx.split(model)
    params = jax.device_get(nnx.to_pure_dict(params))  # host arrays: jit places them per `shardings`
    init_fn = lambda p: init_state(p, optimizer)  # noqa: E731
    abstract, shardings = abstract_state(init_fn, mesh, cfg.fsdp, params)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoints(out / "ckpt", keep=cfg.keep_checkpoints, log=lambda m: console.print(f"[yellow]{m}[/]"))
    restored = ckpt.restore_latest(abstract)
    run_meta = {"config": cfg.to_dict(), "base": str(base.resolve()), "data": str(data.resolve()),
                "num_steps": num_steps, "batch_rows": batch_rows}
    if restored is not None:
        start, state, saved = restored
        check_resume(saved.get("config", {}), cfg.to_dict(), out, RESUMABLE_CHANGES)
        for key in ("base", "data", "batch_rows"):
            if saved.get(key) != run_meta[key]:
                raise SFTError(f"{out} was trained with {key} {saved.get(key)!r}, now {run_meta[key]!r}; resume with "
                               "the same inputs, or pass a new --out")
        console.print(f"[bold]resuming SFT from step {start} of {num_steps}[/]")
    else:
        start = 0
        state = jax.jit(init_fn, out_shardings=shardings)(params)
    del params, model
    batch_sharding = meshlib.batch_sharding(mesh)
    loss_fn = lm_loss_fn(graphdef, remat=cfg.remat)
    train_step = make_train_step(loss_fn, optimizer, shardings, batch_sharding)
    eval_loss = jax.jit(loss_fn)
    row_sharding = meshlib.batch_sharding(mesh, ndim=2, batch_axis=0)
    val_tokens, val_mask = all_rows(val_ex, seq_len, tok.special("bos"))

    log_path = out / "log.jsonl"

    def log(record: dict) -> None:
        if primary:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    log({"event": "resume" if start else "start", "step": start, **run_meta, "model": model_cfg.to_dict(),
         "devices": n_dev, "processes": jax.process_count(), "grad_accum": accum, "replay_rows": replay_rows,
         "train_conversations": len(train_ex), "val_conversations": len(val_ex),
         "too_long": {"train": train_long, "val": val_long}, "rows_per_epoch": batches.rows_per_epoch,
         "jax": jax.__version__, "python": sys.version.split()[0]})
    if start == 0:
        console.print(f"SFT: {base} -> {out}: {len(train_ex)} conversations ({batches.rows_per_epoch} packed rows of "
                      f"{seq_len + 1}), {num_steps} steps of {batch_rows} rows ({replay_rows} replay), {n_dev} "
                      f"device(s), accumulation {accum}")

    def validate(step: int) -> dict:
        result = {"step": step}
        if len(val_tokens):
            total, count = 0.0, 0.0
            rows = micro_rows
            for i in range(0, len(val_tokens), rows):
                t, m = val_tokens[i:i + rows], val_mask[i:i + rows]
                if len(t) < rows:  # pad the last batch with rows that count nothing
                    t = np.concatenate([t, np.full((rows - len(t), t.shape[1]), tok.special("bos"), np.int32)])
                    m = np.concatenate([m, np.zeros((rows - len(m), m.shape[1]), np.int8)])
                first, per = meshlib.local_rows(rows)  # each process hands in its own slice of the rows
                s, c = eval_loss(state["params"], {
                    "tokens": meshlib.global_batch(t[first:first + per], row_sharding, t.shape),
                    "mask": meshlib.global_batch(m[first:first + per], row_sharding, m.shape)})
                total, count = total + float(s), count + float(c)
            result["val_loss"] = total / max(count, 1.0)
        if jax.process_count() == 1 and cfg.eval_samples and val_convs:
            from nanocode.sampler import Sampler
            sampler = Sampler(nnx.merge(graphdef, state["params"]))
            result.update(tool_call_validity(sampler, val_convs[:cfg.eval_samples], tok, cfg.sample_tokens))
        log(result)
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
                          if k != "step" and v is not None)
        console.print(f"step {step}: {shown}")
        return result

    def micro_batches(step: int) -> dict:
        b = batches.batch(step)
        return {k: meshlib.global_batch(v.reshape(accum, local_rows // accum, -1), batch_sharding,
                                        (accum, batch_rows // accum, v.shape[-1])) for k, v in b.items()}

    first_eval = validate(start) if start == 0 else None
    losses, t0 = [], time.perf_counter()
    try:
        for step in range(start, num_steps):
            state, metrics = train_step(state, micro_batches(step))
            done = step + 1
            if done % cfg.log_every == 0 or done == num_steps:
                m = jax.device_get(metrics)
                loss = float(m["loss"])
                if not math.isfinite(loss):
                    raise SFTError(f"the loss became {loss} at step {step}; lower --lr-frac or resume from an "
                                   "earlier checkpoint")
                losses.append((done, loss))
                lr = float(lr_multiplier(step, num_steps, 0.0, cfg.warmdown_ratio, 0.0))
                dt = (time.perf_counter() - t0) / cfg.log_every
                log({"step": done, "loss": loss, "grad_norm": float(m["grad_norm"]), "tokens": float(m["tokens"]),
                     "lr_mult": lr, "step_s": dt})
                console.print(f"step {done:>5}/{num_steps} | loss {loss:.4f} | lr x{lr:.2f} | {dt:.2f} s/step")
                t0 = time.perf_counter()
            if cfg.eval_every and done % cfg.eval_every == 0 and done < num_steps:
                validate(done)
            if (cfg.save_every and done % cfg.save_every == 0) or done == num_steps:
                ckpt.save(done, state, {"step": done, **run_meta})
        ckpt.wait()
    finally:
        ckpt.close()

    final = validate(num_steps)
    params = state["params"]
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        params = multihost_utils.process_allgather(params, tiled=True)
    summary = {"step": num_steps, "first": first_eval, "final": final, "train_loss": losses,
               "model": "model", "base": str(base), "config": cfg.to_dict()}
    if primary:
        save_model(out / "model", jax.device_get(params), tok, model_cfg,
                   meta={"stage": "sft", "base": str(base), "steps": num_steps, "val": final,
                         "sft_config": cfg.to_dict()})
        (out / COMPLETE).write_text(json.dumps(summary, indent=2) + "\n")
        publish(out / "model", out.name)
    log({"event": "complete", **summary})
    console.print(f"[green]done[/]: model in {out / 'model'}")
    return summary
