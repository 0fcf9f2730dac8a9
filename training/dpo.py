"""`nanocode train dpo`: direct preference optimisation toward SOUL.md, top to bottom.

    nanocode train dpo --preset cpu                   # from the newest SFT model, on data/synth pairs
    nanocode train dpo --from-sessions                # also the rejections recorded in chat sessions

DPO (Rafailov et al. 2023) trains the policy directly on preference pairs, with the SFT model as a
frozen reference and no reward model:
    loss = -log sigmoid(beta * [(log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))])
where log pi(y) sums the log-probabilities of the response's tokens (the final assistant message only),
plus --nll times the chosen response's mean per-token NLL (RPO, "DPO+NLL"; dpo_terms says why).
The reference log-probabilities never change, so they are computed once up front and travel with the
batch: no second model sits in memory during training.

Logged per step: loss, preference accuracy (the share of pairs whose implicit reward margin is positive),
the mean margin, chosen and rejected rewards and log-probabilities. Held out (data/synth/pairs_val.jsonl)
before and after: the reward accuracy (0.5 at the start by construction: policy = reference) and the
model's own preference, the share of pairs where log pi(chosen) > log pi(rejected).

Pairs come from `nanocode data synth` (a draft that broke a SOUL.md rule vs its revision) and, with
--from-sessions, from $NANOCODE_HOME/sessions/preferences/ (a call the user rejected vs the step they
accepted instead; when there was none, vs asking the user what they would like).

Resumable and multi-device exactly as pretraining and SFT (same state, mesh, checkpoints, --out layout).
"""
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training import common, outdir
from training.common import COMPLETE, StageError

ASK_INSTEAD = "i'd like to check with you before doing that: should i go ahead, or would you rather i do something else?"


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode train dpo", description="Direct preference optimisation toward "
                                "SOUL.md from the SFT model (frozen reference; resumable).")
    p.add_argument("--preset", default="cpu", help="test (seconds), cpu (a laptop), gpu (one GPU). Default: cpu.")
    p.add_argument("--sft", type=Path, help="SFT model directory: the policy's start and the frozen reference "
                   "(default: the newest $NANOCODE_HOME/runs/sft-*/model).")
    p.add_argument("--data", type=Path, help="Directory with pairs_train.jsonl and pairs_val.jsonl (default: "
                   "$NANOCODE_HOME/data/synth).")
    p.add_argument("--out", type=Path, help="Run directory (default: $NANOCODE_HOME/runs/dpo-d{depth}); rerun the "
                   "same command on it to resume.")
    p.add_argument("--sessions", type=Path, help="Where the session preference records are (default: "
                   "$NANOCODE_HOME/sessions/preferences).")
    common.config_flags(p, DPOConfig, {
        "from_sessions": "Add the rejections recorded in chat sessions as pairs (--no-sessions: do not).",
        "beta": "DPO beta: how far the policy may move from the reference.",
        "nll": "Weight of the chosen replies' per-token NLL added to the DPO loss (RPO; keeps their tool calls "
               "likely); 0: plain DPO.",
        "steps": "Optimiser steps (0: from --epochs).",
        "epochs": "Passes over the pairs.",
        "seq_len": "Row length (0: the model's context).",
        "device_batch": "Pairs per device per micro-step.",
        "batch_pairs": "Pairs per optimiser step, all devices (0: one micro-step's worth).",
        "lr_frac": "Learning rates as a fraction of the base ones.",
        "eval_every": "Steps between held-out preference metrics.",
        "save_every": "Steps between checkpoints.",
        "remat": "none, dots or full: trade compute for memory.",
        "fsdp": "Shard parameters and optimiser state over the devices (for models that do not fit one).",
        "seed": "Data-order seed.",
    }, negative={"from_sessions": "--no-sessions"})
    common.multi_host_flags(p)
    return p


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1                 # how far from the reference the policy may move (the DPO paper's 0.1)
    nll: float = 1.0                  # weight of the chosen responses' per-token NLL added to the loss (RPO)
    seq_len: int = 0                  # 0: the model's context
    device_batch: int = 4             # pairs per device per micro-step (each pair is two rows)
    batch_pairs: int = 0              # pairs per optimiser step over all devices (0: one micro-step)
    epochs: float = 1.0
    steps: int = 0                    # optimiser steps (0: from --epochs)
    lr_frac: float = 0.02             # of the base learning rates: DPO moves a trained model a little
    warmdown_ratio: float = 0.5
    eval_every: int = 50              # held-out preference metrics (0: only before and after)
    save_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    remat: str = "none"
    fsdp: bool = False
    from_sessions: bool = False

    def __post_init__(self):
        for name in ("device_batch", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise StageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("seq_len", "batch_pairs", "steps", "eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise StageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.beta <= 0:
            raise StageError(f"--beta must be > 0, got {self.beta}")
        if self.nll < 0:
            raise StageError(f"--nll must be >= 0 (0: plain DPO), got {self.nll}")
        if self.epochs <= 0 and self.steps == 0:
            raise StageError("give --epochs > 0 or --steps")
        if not 0 < self.lr_frac <= 1 or not 0 <= self.warmdown_ratio <= 1:
            raise StageError("--lr-frac must be in (0, 1] and --warmdown-ratio in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "test": dict(device_batch=4, steps=20, eval_every=10, save_every=10, log_every=5, lr_frac=0.5),
    "cpu": dict(device_batch=4, epochs=1.0, eval_every=50, save_every=50, log_every=5),
    "gpu": dict(device_batch=8, batch_pairs=32, epochs=2.0, eval_every=50, remat="dots"),
}
RESUMABLE_CHANGES = {"eval_every", "save_every", "keep_checkpoints", "log_every", "remat", "fsdp", "device_batch"}


def from_preset(name: str, **overrides) -> DPOConfig:
    return common.from_preset(PRESETS, DPOConfig, name, "DPO", **overrides)


# --- pairs from chat sessions -----------------------------------------------------------------------

def session_pairs(directory: Path) -> tuple[list[dict], int]:
    """Preference pairs from the agent's rejection records (agent/session.py), and how many were unusable.
    A record without `chosen` (the next step was rejected too, or never came) gets one: the same turn so
    far, then asking the user instead of making the rejected call."""
    pairs, bad = [], 0
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                messages, rejected = rec["messages"], rec["rejected"]
                if not messages or messages[-1]["role"] != "user" or rejected["role"] != "assistant":
                    raise ValueError("not a prompt ending with the user's request")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1
                continue
            chosen = rec.get("chosen")
            if chosen is None:
                so_far = [p for p in rejected["content"][:-1]]
                chosen = {"role": "assistant", "content": so_far + [{"type": "text", "text": ASK_INSTEAD}]}
            pairs.append({"messages": messages, "chosen": chosen, "rejected": rejected,
                          "meta": {"fault": "session_rejection", "note": rec.get("note", ""),
                                   "session": rec.get("session", "")}})
    return pairs, bad


# --- the loss ------------------------------------------------------------------------------------

# At the start the policy is the reference, so every margin is 0 up to float noise (the reference pass
# batches rows differently); a margin this small is a tie and counts as half right, not as a coin flip.
TIE = 1e-3


def tie_aware_accuracy(margin, xp):
    """1 where the chosen response's implicit reward is higher, 0.5 for a tie, 0 otherwise (numpy or jnp)."""
    return xp.where(xp.abs(margin) < TIE, 0.5, xp.where(margin > 0, 1.0, 0.0))


def dpo_terms(graphdef, beta: float, remat: str = "none", nll: float = 0.0):
    """(params, batch) -> (loss sum, sums of the metrics) over a micro-batch of pairs:
    batch = {chosen, rejected: int32[B, T+1], chosen_mask, rejected_mask: [B, T], ref_chosen, ref_rejected: [B]}.

    With nll > 0 the loss adds nll * (the chosen response's mean per-token NLL), as in RPO (Pang et al. 2024,
    "DPO+NLL"). Why: plain DPO only pushes the margin, and it can get there by lowering *both* sides; on the
    cpu speedrun it lowered the chosen replies too and lost every well-formed tool call (call rate 1.0 -> 0.0);
    with this term and sft_data.focus_pair it kept 0.92 at lr_frac 0.02 (2026-11-22, training/LOG.md)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from training.losses import token_losses

    def terms(params, b):
        tokens_2BxT1 = jnp.concatenate([b["chosen"], b["rejected"]])
        mask_2BxT = jnp.concatenate([b["chosen_mask"], b["rejected_mask"]]).astype(jnp.float32)
        nll_2BxT = token_losses(nnx.merge(graphdef, params), tokens_2BxT1[:, :-1], tokens_2BxT1[:, 1:], remat)
        logp_2B = -(nll_2BxT * mask_2BxT).sum(axis=-1)
        logp_c_B, logp_r_B = jnp.split(logp_2B, 2)
        reward_c_B = beta * (logp_c_B - b["ref_chosen"])
        reward_r_B = beta * (logp_r_B - b["ref_rejected"])
        margin_B = reward_c_B - reward_r_B
        dpo_loss_B = -jax.nn.log_sigmoid(margin_B)
        n_chosen_B = jnp.maximum(mask_2BxT[:margin_B.shape[0]].sum(axis=-1), 1.0)
        nll_chosen_B = -logp_c_B / n_chosen_B
        loss_B = dpo_loss_B + nll * nll_chosen_B
        sums = {"loss": loss_B.sum(), "pairs": jnp.float32(loss_B.shape[0]), "dpo_loss": dpo_loss_B.sum(),
                "nll_chosen": nll_chosen_B.sum(),
                "accuracy": tie_aware_accuracy(margin_B, jnp).sum(),
                "prefers_chosen": (logp_c_B > logp_r_B).astype(jnp.float32).sum(),
                "margin": margin_B.sum(), "reward_chosen": reward_c_B.sum(), "reward_rejected": reward_r_B.sum(),
                "logp_chosen": logp_c_B.sum(), "logp_rejected": logp_r_B.sum()}
        return sums["loss"], sums
    return terms


def make_dpo_step(terms, optimizer, state_sharding=None, batch_sharding=None):
    """training/train_step.make_train_step's step (accumulation over a leading micro-batch axis, one
    optimiser update, donated state, explicit shardings), but carrying DPO's metric sums out of the
    loss: make_train_step's loss function returns only (loss sum, weight), and the preference metrics
    must come from the very forward pass the gradient does."""
    import jax
    import jax.numpy as jnp
    import optax

    grad_fn = jax.value_and_grad(terms, has_aux=True)

    def step(state, batch):
        params = state["params"]

        def micro(carry, micro_batch):
            grads_acc, sums_acc = carry
            (_, sums), grads = grad_fn(params, micro_batch)
            return (jax.tree.map(jnp.add, grads_acc, grads), jax.tree.map(jnp.add, sums_acc, sums)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        _, sums0 = jax.eval_shape(terms, params, jax.tree.map(lambda x: x[0], batch))
        (grads, sums), _ = jax.lax.scan(micro, (zeros, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums0)),
                                        batch)
        n = jnp.maximum(sums["pairs"], 1.0)
        grads = jax.tree.map(lambda g: g / n, grads)
        updates, opt_state = optimizer.update(grads, state["opt"], params)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates), "opt": opt_state}
        metrics = {k: v / n for k, v in sums.items() if k != "pairs"} | {"pairs": sums["pairs"],
                                                                        "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    kwargs = {}
    if state_sharding is not None:
        kwargs = dict(in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, None))
    return jax.jit(step, donate_argnums=(0,), **kwargs)


# --- the stage -----------------------------------------------------------------------------------

def train_dpo(cfg: DPOConfig, sft: Path | None = None, data: Path | None = None, out: Path | None = None,
              sessions: Path | None = None, coordinator: str | None = None, num_processes: int | None = None,
              process_id: int | None = None, console=None) -> dict:
    """Align (or resume); returns the summary also written to complete.json."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from jax.experimental import multihost_utils
    from rich.console import Console

    from nanocode import runtime
    from nanocode.lookup import nanocode_home
    from nanocode.checkpoint import CheckpointError, load_model, save_model
    from training import mesh as meshlib
    from training.losses import token_losses
    from training.checkpointing import Checkpoints
    from training.optim import lr_multiplier, make_optimizer
    from training.config import fine_tune_config
    from training.sft_data import pair_batch_indices, pair_rows
    from training.synth.driver import read_jsonl
    from training.train_step import abstract_state, init_state

    console = console or Console()
    home = nanocode_home()
    meshlib.init_distributed(coordinator, num_processes, process_id)
    runtime.setup_jax()
    primary = jax.process_index() == 0

    # --- inputs: the SFT model (policy start and frozen reference) and the pairs ----------------------
    sft = Path(sft).expanduser() if sft else common.newest_model("sft-*")
    if sft is None:
        raise StageError(f"no SFT model found under {home / 'runs'}; run `nanocode train sft` or pass --sft DIR")
    try:
        model, tok, info = load_model(sft)
    except CheckpointError as e:
        raise StageError(str(e)) from e
    model_cfg = info["config"]
    out = Path(out or home / "runs" / f"dpo-d{model_cfg.depth}").expanduser().absolute()
    summary = common.completed(out)
    if summary is not None:
        console.print(f"[green]DPO in {out} is already complete[/] (model in {out / 'model'}); pass a new --out")
        return summary
    data = Path(data or home / "data" / "synth").expanduser()
    try:
        train_pairs, val_pairs = read_jsonl(data / "pairs_train.jsonl"), read_jsonl(data / "pairs_val.jsonl")
    except FileNotFoundError as e:
        raise StageError(f"{e} (--data {data})") from e
    n_sessions, bad_sessions = 0, 0
    if cfg.from_sessions:
        sessions = Path(sessions or home / "sessions" / "preferences").expanduser()
        extra, bad_sessions = session_pairs(sessions) if sessions.is_dir() else ([], 0)
        if not extra:
            console.print(f"[yellow]--from-sessions: no rejection records in {sessions} yet[/]")
        train_pairs, n_sessions = train_pairs + extra, len(extra)
    seq_len = cfg.seq_len or model_cfg.seq_len
    if seq_len > model_cfg.seq_len:
        raise StageError(f"--seq-len {seq_len} is longer than the model's context {model_cfg.seq_len}")
    try:
        train_rows, train_long = pair_rows(train_pairs, tok, seq_len)
        val_rows, val_long = pair_rows(val_pairs, tok, seq_len)
    except ValueError as e:
        raise StageError(str(e)) from e
    if not len(train_rows):
        raise StageError(f"no preference pairs fit {seq_len} tokens in {data} (generate some with `nanocode data "
                       "synth`, or raise --seq-len)")

    # --- batches and devices -------------------------------------------------------------------------
    mesh = meshlib.make_mesh()
    n_dev = mesh.devices.size
    micro = cfg.device_batch * n_dev
    batch_pairs = cfg.batch_pairs or micro
    if batch_pairs % micro:
        raise StageError(f"--batch-pairs {batch_pairs} is not a multiple of one micro-step ({cfg.device_batch} "
                       f"pairs x {n_dev} devices = {micro})")
    accum = batch_pairs // micro
    local_pairs = batch_pairs // jax.process_count()
    num_steps = cfg.steps or max(1, math.ceil(cfg.epochs * len(train_rows) / batch_pairs))

    graphdef, params = nnx.split(model)
    params = jax.device_get(nnx.to_pure_dict(params))  # host arrays: placed per the state's shardings below
    terms = dpo_terms(graphdef, cfg.beta, cfg.remat, cfg.nll)
    row_sharding = meshlib.batch_sharding(mesh, ndim=2, batch_axis=0)

    def place(x: np.ndarray, sharding, global_rows: int):
        first, per = meshlib.local_rows(global_rows)
        return meshlib.global_batch(x[first:first + per], sharding, (global_rows,) + x.shape[1:])

    # --- the frozen reference: every pair's log-probabilities under the SFT model, once ---------------
    @jax.jit
    def logps(p, tokens_BxT1, mask_BxT):
        nll = token_losses(nnx.merge(graphdef, p), tokens_BxT1[:, :-1], tokens_BxT1[:, 1:])
        return -(nll * mask_BxT.astype(jnp.float32)).sum(axis=-1)

    def all_logps(p, rows) -> tuple[np.ndarray, np.ndarray]:
        """log pi(chosen), log pi(rejected) of every pair in `rows` (each process computes them all)."""
        out_c, out_r = [], []
        step = micro
        for i in range(0, len(rows), step):
            part = rows.take(np.arange(i, min(i + step, len(rows))))
            n = len(part)
            pad = lambda x: np.concatenate([x, np.repeat(x[-1:], step - n, axis=0)]) if n < step else x  # noqa: E731
            for src, dst in ((("chosen", "chosen_mask"), out_c), (("rejected", "rejected_mask"), out_r)):
                t, m = pad(getattr(part, src[0])), pad(getattr(part, src[1]))
                lp = logps(p, place(t, row_sharding, step), place(m, row_sharding, step))
                dst.append(np.asarray(multihost_utils.process_allgather(lp, tiled=True)
                                      if jax.process_count() > 1 else jax.device_get(lp))[:n])
        return np.concatenate(out_c), np.concatenate(out_r)

    # --- state: the SFT parameters + a fresh optimiser, or the newest checkpoint ----------------------
    optimizer = make_optimizer(fine_tune_config(model_cfg.depth, cfg.lr_frac, cfg.warmdown_ratio, cfg.remat,
                                                cfg.fsdp, cfg.seed), num_steps)
    init_fn = lambda p: init_state(p, optimizer)  # noqa: E731
    abstract, shardings = abstract_state(init_fn, mesh, cfg.fsdp, params)
    ref_params = jax.device_put(params, shardings["params"])
    t_ref = time.perf_counter()
    ref_train = all_logps(ref_params, train_rows)
    ref_val = all_logps(ref_params, val_rows) if len(val_rows) else (np.zeros(0), np.zeros(0))
    console.print(f"reference log-probabilities of {len(train_rows) + len(val_rows)} pairs in "
                  f"{time.perf_counter() - t_ref:.1f} s")
    del ref_params
    if primary:  # the job's one writer
        outdir.claim(out, "train dpo", outdir.RUN_FILES)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoints(out / "ckpt", keep=cfg.keep_checkpoints, log=lambda m: console.print(f"[yellow]{m}[/]"))
    restored = ckpt.restore_latest(abstract)
    run_meta = {"config": cfg.to_dict(), "sft": str(sft.resolve()), "data": str(data.resolve()),
                "num_steps": num_steps, "batch_pairs": batch_pairs, "train_pairs": len(train_rows)}
    if restored is not None:
        start, state, saved = restored
        # checkpoints from before --nll existed were plain DPO: `--nll 0` resumes them
        common.check_resume({"nll": 0.0, **saved.get("config", {})}, cfg.to_dict(), out, RESUMABLE_CHANGES)
        for key in ("sft", "data", "batch_pairs", "train_pairs"):
            if saved.get(key) != run_meta[key]:
                raise StageError(f"{out} was trained with {key} {saved.get(key)!r}, now {run_meta[key]!r}; resume with "
                               "the same inputs, or pass a new --out")
        console.print(f"[bold]resuming DPO from step {start} of {num_steps}[/]")
    else:
        start = 0
        state = jax.jit(init_fn, out_shardings=shardings)(params)
    batch_sharding = {k: meshlib.batch_sharding(mesh, ndim=n, batch_axis=1) for k, n in
                      (("chosen", 3), ("rejected", 3), ("chosen_mask", 3), ("rejected_mask", 3),
                       ("ref_chosen", 2), ("ref_rejected", 2))}
    dpo_step = make_dpo_step(terms, optimizer, shardings, batch_sharding)

    log_path = out / "log.jsonl"
    log = common.jsonl_log(log_path, primary)

    log({"event": "resume" if start else "start", "step": start, **run_meta, "model": model_cfg.to_dict(),
         "devices": n_dev, "processes": jax.process_count(), "grad_accum": accum, "val_pairs": len(val_rows),
         "session_pairs": n_sessions, "bad_session_records": bad_sessions,
         "too_long": {"train": train_long, "val": val_long}, "jax": jax.__version__})
    if start == 0:
        console.print(f"DPO: {sft} -> {out}: {len(train_rows)} pairs ({n_sessions} from sessions), {num_steps} steps "
                      f"of {batch_pairs} pairs, beta {cfg.beta}, chosen NLL weight {cfg.nll}, {n_dev} device(s), "
                      f"accumulation {accum}")

    def held_out(step: int) -> dict:
        """Preference metrics on the held-out pairs under the current policy."""
        if not len(val_rows):
            return {"step": step}
        pc, pr = all_logps(state["params"], val_rows)
        margin = cfg.beta * ((pc - ref_val[0]) - (pr - ref_val[1]))
        result = {"step": step, "val_pairs": len(val_rows),
                  "val_accuracy": float(np.mean(tie_aware_accuracy(margin, np))),
                  "val_prefers_chosen": float(np.mean(pc > pr)), "val_margin": float(np.mean(margin)),
                  "val_loss": float(np.mean(np.logaddexp(0.0, -margin)))}
        log(result)
        console.print(f"step {step}: held-out preference accuracy {result['val_accuracy']:.3f} (reward), "
                      f"{result['val_prefers_chosen']:.3f} (log-prob), margin {result['val_margin']:.3f}")
        return result

    def micro_batches(step: int) -> dict:
        idx = pair_batch_indices(len(train_rows), local_pairs, step, cfg.seed, jax.process_index(),
                                 jax.process_count())
        part = train_rows.take(idx)
        local = {"chosen": part.chosen, "rejected": part.rejected, "chosen_mask": part.chosen_mask,
                 "rejected_mask": part.rejected_mask, "ref_chosen": ref_train[0][idx].astype(np.float32),
                 "ref_rejected": ref_train[1][idx].astype(np.float32)}
        return {k: meshlib.global_batch(v.reshape((accum, local_pairs // accum) + v.shape[1:]), batch_sharding[k],
                                        (accum, batch_pairs // accum) + v.shape[1:]) for k, v in local.items()}

    before = held_out(start) if start == 0 else None
    history, t0 = [], time.perf_counter()
    try:
        for step in range(start, num_steps):
            state, metrics = dpo_step(state, micro_batches(step))
            done = step + 1
            if done % cfg.log_every == 0 or done == num_steps or step == start:
                m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not math.isfinite(m["loss"]):
                    raise ckpt.diverged(step, f"the DPO loss became {m['loss']} at step {step}",
                                        "lower --lr-frac or --beta")
                lr = float(lr_multiplier(step, num_steps, 0.0, cfg.warmdown_ratio, 0.0))
                history.append({"step": done, **m})
                log({"step": done, **m, "lr_mult": lr, "step_s": (time.perf_counter() - t0) / max(1, len(history))})
                console.print(f"step {done:>5}/{num_steps} | loss {m['loss']:.4f} | acc {m['accuracy']:.3f} | "
                              f"margin {m['margin']:.3f} | nll c {m['nll_chosen']:.3f} | "
                              f"logp c {m['logp_chosen']:.1f} r {m['logp_rejected']:.1f}")
            if cfg.eval_every and done % cfg.eval_every == 0 and done < num_steps:
                held_out(done)
            if (cfg.save_every and done % cfg.save_every == 0) or done == num_steps:
                ckpt.save(done, state, {"step": done, **run_meta})
        ckpt.wait()
    finally:
        ckpt.close()

    after = held_out(num_steps)
    if before is None:  # resumed: the "before" numbers are in the first run's log
        before = next((json.loads(l) for l in log_path.read_text().splitlines()
                       if '"val_accuracy"' in l and json.loads(l).get("step") == 0), None) if log_path.is_file() else None
    params_out = state["params"]
    if jax.process_count() > 1:
        params_out = multihost_utils.process_allgather(params_out, tiled=True)
    summary = {"step": num_steps, "before": before, "after": after, "train": history, "model": "model",
               "sft": str(sft), "config": cfg.to_dict(), "session_pairs": n_sessions}
    if primary:
        save_model(out / "model", jax.device_get(params_out), tok, model_cfg,
                   meta={"stage": "dpo", "sft": str(sft), "steps": num_steps, "before": before, "after": after,
                         "dpo_config": cfg.to_dict(), "project_notes": info["meta"].get("project_notes", False)})
        (out / COMPLETE).write_text(json.dumps(summary, indent=2) + "\n")
        common.publish(out / "model", out.name)
    log({"event": "complete", **{k: v for k, v in summary.items() if k != "train"}})
    if before and after and "val_accuracy" in after:
        console.print(f"[green]done[/]: held-out preference accuracy {before['val_prefers_chosen']:.2f} -> "
                      f"{after['val_prefers_chosen']:.2f} (log-prob), reward accuracy {before['val_accuracy']:.2f} -> "
                      f"{after['val_accuracy']:.2f}; model in {out / 'model'}")
    else:
        console.print(f"[green]done[/]: model in {out / 'model'}")
    return summary


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        train_dpo(from_preset(a.preset, **common.config_overrides(a, DPOConfig)), a.sft, a.data, a.out, a.sessions,
                  a.coordinator, a.num_processes, a.process_id)
    except StageError as e:
        return common.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
