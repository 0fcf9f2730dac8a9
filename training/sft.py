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
from dataclasses import asdict, dataclass
from pathlib import Path

from training import common, outdir
from training.common import COMPLETE, StageError


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode train sft", description="Supervised fine-tuning on tool-use "
                                "conversations (loss on the assistant's tokens only; resumable).")
    p.add_argument("--preset", default="cpu", help="test (seconds), cpu (a laptop), gpu (one GPU). Default: cpu.")
    p.add_argument("--base", type=Path, help="Base model directory (default: the newest "
                   "$NANOCODE_HOME/runs/base-*/model).")
    p.add_argument("--data", type=Path, help="`nanocode data synth` output (default: $NANOCODE_HOME/data/synth).")
    p.add_argument("--out", type=Path, help="Run directory (default: $NANOCODE_HOME/runs/sft-d{depth}); rerun the "
                   "same command on it to resume.")
    p.add_argument("--tokens", type=Path, help="Pretraining token shards for the replay rows (default: "
                   "$NANOCODE_HOME/data/tokens).")
    common.config_flags(p, SFTConfig, {
        "steps": "Optimiser steps (0: from --epochs).",
        "epochs": "Passes over the conversations.",
        "seq_len": "Row length (0: the model's context).",
        "device_batch": "Rows per device per micro-step.",
        "batch_rows": "Rows per optimiser step, all devices (0: one micro-step's worth).",
        "lr_frac": "Learning rates as a fraction of the base ones.",
        "replay": "Share of rows from pretraining data (code, FIM).",
        "eval_every": "Steps between validation loss and tool-call validity.",
        "eval_samples": "Held-out requests sampled per eval.",
        "save_every": "Steps between checkpoints.",
        "remat": "none, dots or full: trade compute for memory.",
        "fsdp": "Shard parameters and optimiser state over the devices (for models that do not fit one).",
        "seed": "Data-order seed.",
    })
    common.multi_host_flags(p)
    return p


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
                raise StageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("seq_len", "batch_rows", "steps", "eval_every", "eval_samples", "save_every"):
            if getattr(self, name) < 0:
                raise StageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.replay < 1 or not 0 <= self.fim_rate <= 1 or not 0 <= self.warmdown_ratio <= 1:
            raise StageError("--replay must be in [0, 1), --fim-rate and --warmdown-ratio in [0, 1]")
        if self.epochs <= 0 and self.steps == 0:
            raise StageError("give --epochs > 0 or --steps")
        if not 0 < self.lr_frac <= 1:
            raise StageError(f"--lr-frac must be in (0, 1], got {self.lr_frac}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "test": dict(device_batch=4, steps=24, eval_every=8, eval_samples=4, sample_tokens=24, save_every=8,
                 log_every=4, replay=0.0, lr_frac=1.0),
    "cpu": dict(device_batch=8, epochs=2.0, eval_every=50, eval_samples=12, save_every=50, log_every=5),
    # 16 rows a step, not 64: the chat tokens are learnt per optimiser step; 175 steps of 16 rows reached a
    # tool-call rate of 1.0 where 44 of 64 over the same data stayed at 0 (2026-11-22, training/LOG.md).
    "gpu": dict(device_batch=16, batch_rows=16, epochs=3.0, eval_every=50, eval_samples=32, remat="dots"),
}
RESUMABLE_CHANGES = {"eval_every", "eval_samples", "sample_tokens", "save_every", "keep_checkpoints", "log_every",
                     "remat", "fsdp", "device_batch"}


def from_preset(name: str, **overrides) -> SFTConfig:
    return common.from_preset(PRESETS, SFTConfig, name, "SFT", **overrides)


# The chat and tool-call tokens never occur in pretraining text, so pretraining pushes their logits down
# until the soft-cap saturates (-14.94 of the cap's -15 after the first H200 speedrun's base stage), where tanh
# passes almost no gradient and SFT could not teach a single call. Their head columns start at the mean of the
# ordinary tokens' instead (Hewitt 2021, "Initializing new word embeddings for pretrained language models");
# their input embeddings keep their random initialisation, which keeps them distinct (training/LOG.md).
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
    from training.config import fine_tune_config
    from training.eval.tool_calls import tool_call_validity
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
    base = Path(base).expanduser() if base else common.newest_model("base-*")
    if base is None:
        raise StageError(f"no base model found under {home / 'runs'}; train one with `nanocode train base` or "
                       "pass --base DIR")
    try:
        model, tok, info = load_model(base)
    except CheckpointError as e:
        raise StageError(str(e)) from e
    model_cfg = info["config"]
    if info.get("meta", {}).get("stage") == "base":
        reset_chat_tokens(model, tok)
    out = Path(out or home / "runs" / f"sft-d{model_cfg.depth}").expanduser().absolute()
    summary = common.completed(out)
    if summary is not None:
        console.print(f"[green]SFT in {out} is already complete[/] (model in {out / 'model'}); pass a new --out "
                      "to train another")
        return summary
    data = Path(data or home / "data" / "synth").expanduser()
    try:
        train_convs, val_convs = read_jsonl(data / "train.jsonl"), read_jsonl(data / "val.jsonl")
    except FileNotFoundError as e:
        raise StageError(f"{e} (--data {data})") from e
    seq_len = cfg.seq_len or model_cfg.seq_len
    if seq_len > model_cfg.seq_len:
        raise StageError(f"--seq-len {seq_len} is longer than the base model's context {model_cfg.seq_len}")
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
        raise StageError(f"--batch-rows {batch_rows} is not a multiple of one micro-step ({cfg.device_batch} rows "
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
            raise StageError(f"replay rows need the pretraining token shards ({e}); pass --tokens DIR, or --replay 0 "
                           "to fine-tune on conversations only") from e
    try:
        batches = ConversationBatches(train_ex, seq_len, local_rows, tok.special("bos"), seed=cfg.seed,
                                      process_index=jax.process_index(), process_count=jax.process_count(),
                                      replay=replay, replay_rows=replay_rows)
    except ValueError as e:  # no conversation fits, or too many replay rows: say it, no traceback
        raise StageError(str(e)) from e
    num_steps = cfg.steps or max(1, math.ceil(cfg.epochs * batches.steps_per_epoch()))

    # --- state: the base parameters + a fresh optimiser, or the newest checkpoint ---------------------
    optimizer = make_optimizer(fine_tune_config(model_cfg.depth, cfg.lr_frac, cfg.warmdown_ratio, cfg.remat,
                                                cfg.fsdp, cfg.seed), num_steps)
    graphdef, params = nnx.split(model)
    params = jax.device_get(nnx.to_pure_dict(params))  # host arrays: jit places them per `shardings`
    init_fn = lambda p: init_state(p, optimizer)  # noqa: E731
    abstract, shardings = abstract_state(init_fn, mesh, cfg.fsdp, params)
    if primary:  # the job's one writer
        outdir.claim(out, "train sft", outdir.RUN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoints(out / "ckpt", keep=cfg.keep_checkpoints, log=lambda m: console.print(f"[yellow]{m}[/]"))
    restored = ckpt.restore_latest(abstract)
    run_meta = {"config": cfg.to_dict(), "base": str(base.resolve()), "data": str(data.resolve()),
                "num_steps": num_steps, "batch_rows": batch_rows}
    if restored is not None:
        start, state, saved = restored
        common.check_resume(saved.get("config", {}), cfg.to_dict(), out, RESUMABLE_CHANGES)
        for key in ("base", "data", "batch_rows"):
            if saved.get(key) != run_meta[key]:
                raise StageError(f"{out} was trained with {key} {saved.get(key)!r}, now {run_meta[key]!r}; resume with "
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

    log = common.jsonl_log(out / "log.jsonl", primary)

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
                    raise ckpt.diverged(step, f"the loss became {loss} at step {step}", "lower --lr-frac")
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
                         "sft_config": cfg.to_dict(),
                         # read by agent/setup.py: a model trained with project notes reads AGENTS.md
                         "project_notes": any("notes" in c.get("meta", {}) for c in train_convs)})
        (out / COMPLETE).write_text(json.dumps(summary, indent=2) + "\n")
        common.publish(out / "model", out.name)
    log({"event": "complete", **summary})
    console.print(f"[green]done[/]: model in {out / 'model'}")
    return summary


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        train_sft(from_preset(a.preset, **common.config_overrides(a, SFTConfig)), a.base, a.data, a.out, a.tokens,
                  a.coordinator, a.num_processes, a.process_id)
    except StageError as e:
        return common.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
