"""`nanocode train rl`: reinforcement on verifiable agent tasks, through the real agent loop and tools.

    nanocode train rl --preset cpu                   # from the newest DPO (else SFT) model
    nanocode train rl --model runs/dpo-d8/model --rounds 20 --samples 8 --out runs/rl-d8

Every round, top to bottom:
1. tasks: `--tasks` procedural agent tasks with checkers (training/eval/agent_tasks.py) from the training
   seeds, asked with the request generator's training phrasings; held out: the unseen-phrasing suite of
   `nanocode eval agent` (its seeds and phrasing patterns are never trained on);
2. rollouts: `--samples` attempts of each task at `--temperature`, all decoded batched and each in a
   throwaway workspace with every call approved (training/eval/rollout.py);
3. reward: the checker's success, minus penalties for malformed calls, calls repeated identically after
   they failed and turns that hit the step or length limit, plus a small SOUL.md term (the share of the
   critic's rules the turn keeps);
4. update: one optimiser step on the rollouts' own tokens (the loss mask of SFT: only what the model
   wrote), each row weighted by its advantage. `--method grpo`: reward minus the mean of its task's
   group (nanochat's chat_rl: on-policy, no ratio clipping, no KL term); `rft`: rejection-sampling
   fine-tuning, weight 1 on the successful rollouts and 0 elsewhere (SFT on its own successes).
The round's state is checkpointed, so a kill -9 resumes at the next round with the same tasks. With
`--max-minutes` no round starts after that much time: the run ends early (its learning-rate schedule
unfinished) with the held-out evaluation and the model, so a speedrun keeps its time budget.

    --out/ckpt/  --out/log.jsonl  --out/model/  --out/complete.json   (as the other stages)
"""
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training import common, outdir
from training.common import StageError

METHODS = ("grpo", "rft")
TRAIN_SEED = 10_000  # round r draws its tasks from seed TRAIN_SEED + r; the eval's suites use small seeds


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode train rl", description="Reinforcement on verifiable agent tasks with the "
                     "real tools (resumable by round).")
    p.add_argument("--preset", default="cpu", help=f"{', '.join(PRESETS)}: test (seconds), cpu (a laptop), gpu "
                   "(one GPU). Default: cpu.")
    p.add_argument("--model", type=Path, help="Model to start from (default: the newest "
                   "$NANOCODE_HOME/runs/dpo-*/model, else sft-*).")
    p.add_argument("--out", type=Path, help="Run directory (default: $NANOCODE_HOME/runs/rl-d{depth}); rerun the "
                   "same command on it to resume.")
    common.config_flags(p, RLConfig, {
        "rounds": "Rounds of rollouts + one update.",
        "tasks": "Tasks per round.",
        "samples": "Rollouts per task (the group GRPO compares).",
        "method": f"{' or '.join(METHODS)}.",
        "temperature": "Sampling temperature of the rollouts.",
        "lr_frac": "Learning rates as a fraction of the base ones.",
        "kinds": "Comma-separated task kinds (default: all).",
        "max_steps": "Most tool calls per rollout.",
        "max_reply_tokens": "Most tokens per generation.",
        "deadline_s": "Seconds a rollout may run before it is cut (and fails).",
        "eval_per_kind": "Held-out tasks per kind at each evaluation.",
        "eval_every": "Rounds between held-out evaluations (0: only at start and end).",
        "max_minutes": "Start no round after this many minutes of rounds (0: no limit); the run then ends.",
        "seed": "Task and sampling seed.",
    })
    return p


@dataclass(frozen=True)
class RLConfig:
    rounds: int = 20
    tasks: int = 24                   # tasks per round
    samples: int = 8                  # rollouts per task
    method: str = "rft"               # the simplest that learns on the test family (tests/test_rl.py)
    temperature: float = 1.0
    top_p: float = 1.0
    lr_frac: float = 0.05             # smaller than SFT's 0.1: every step moves on the model's own samples
    kinds: str = ""                   # "" = every kind of agent_tasks
    max_steps: int = 6
    max_reply_tokens: int = 256
    deadline_s: float = 120.0
    malformed_penalty: float = 0.1    # per call the loop could not parse
    repeat_penalty: float = 0.2       # per call repeated identically after it failed
    limit_penalty: float = 0.1        # the turn hit max_steps, the reply length or the repeat guard
    soul_weight: float = 0.1          # reward += soul_weight * (share of SOUL.md rules kept - 1)
    device_batch: int = 8             # rows per micro-step
    eval_per_kind: int = 2
    eval_every: int = 5
    max_minutes: float = 0.0          # 0: no limit
    keep_checkpoints: int = 2
    seed: int = 0
    remat: str = "none"

    def __post_init__(self):
        for name in ("rounds", "tasks", "samples", "max_steps", "max_reply_tokens", "device_batch",
                     "eval_per_kind", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise StageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.method not in METHODS:
            raise StageError(f"--method must be {' or '.join(METHODS)}, got {self.method!r}")
        if (self.eval_every < 0 or self.max_minutes < 0 or self.deadline_s <= 0 or self.temperature < 0
                or not 0 < self.top_p <= 1):
            raise StageError("--eval-every and --max-minutes must be >= 0, --deadline-s > 0, --temperature >= 0, --top-p in (0, 1]")
        if not 0 < self.lr_frac <= 1:
            raise StageError(f"--lr-frac must be in (0, 1], got {self.lr_frac}")
        if self.method == "grpo" and self.samples < 2:
            raise StageError("--method grpo compares a task's samples with each other: give --samples >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "test": dict(rounds=2, tasks=2, samples=2, max_steps=2, max_reply_tokens=24, device_batch=4,
                 eval_per_kind=1, eval_every=0, lr_frac=0.5, deadline_s=60.0),
    "cpu": dict(rounds=8, tasks=12, samples=4, max_reply_tokens=128, eval_every=4),
    "gpu": dict(rounds=30, tasks=32, samples=8, eval_every=5),
}
RESUMABLE_CHANGES = {"eval_every", "eval_per_kind", "keep_checkpoints", "device_batch", "remat",
                     "deadline_s", "max_minutes"}


def from_preset(name: str, **overrides) -> RLConfig:
    return common.from_preset(PRESETS, RLConfig, name, "RL", **overrides)


# --- reward and advantages ------------------------------------------------------------------------------

def reward(r, cfg: RLConfig) -> float:
    """The checker's verdict with the penalties and the SOUL term (see the module docstring)."""
    from training.critic import RULES, critique
    value = float(r.success) - cfg.malformed_penalty * r.malformed - cfg.repeat_penalty * r.repeated_failures
    if r.end in ("max_steps", "length", "repeated_failure", "deadline"):
        value -= cfg.limit_penalty
    if cfg.soul_weight and r.messages:
        broken = {v.rule for v in critique(r.messages)}
        value -= cfg.soul_weight * len(broken) / len(RULES)
    return value


def advantages(rollouts, method: str) -> list[float]:
    """One weight per rollout. grpo: its reward minus its task's mean reward (no division by the group's
    spread, as nanochat's chat_rl: a group that all succeed or all fail teaches nothing and weighs 0).
    rft: 1 for a success, 0 otherwise."""
    if method == "rft":
        return [1.0 if r.success else 0.0 for r in rollouts]
    groups: dict[str, list[float]] = {}
    for r in rollouts:
        groups.setdefault(r.task_id, []).append(r.reward)
    mean = {k: sum(v) / len(v) for k, v in groups.items()}
    return [r.reward - mean[r.task_id] for r in rollouts]


def training_rows(rollouts, weights, tok, seq_len: int):
    """tokens int32[N, L+1], mask int8[N, L] (1 on what the model wrote), weight float32[N] for the rollouts
    with a non-zero weight; L is the longest such conversation rounded up to a power of two (few compiled
    shapes), at most seq_len. Conversations longer than seq_len are cut at it."""
    import numpy as np
    from nanocode.template import render_conversation
    kept = [(r, w) for r, w in zip(rollouts, weights) if w != 0.0 and r.messages]
    rendered = [(render_conversation(r.messages, tok), w) for r, w in kept]
    longest = max((len(ids) for (ids, _), _ in rendered), default=2)
    L = min(seq_len, 1 << max(4, (longest - 2).bit_length()))
    n = len(rendered)
    tokens = np.full((n, L + 1), tok.special("bos"), np.int32)
    mask = np.zeros((n, L), np.int8)
    weight = np.zeros(n, np.float32)
    for i, ((ids, m), w) in enumerate(rendered):
        ids, m = ids[:L + 1], m[:L + 1]
        tokens[i, :len(ids)] = ids
        mask[i, :len(ids) - 1] = m[1:len(ids)]  # mask[t] says whether target ids[t + 1] was the model's
        weight[i] = w
    return tokens, mask, weight


def weighted_loss_fn(graphdef, remat: str = "none"):
    """sum over rows of weight * (the summed NLL of the tokens the model wrote), and the count of those
    tokens: the policy gradient of REINFORCE with a baseline, in train_step's (sum, count) convention."""
    import jax.numpy as jnp
    from flax import nnx
    from training.losses import token_losses

    def loss_fn(params, batch):
        tokens_BxT1 = batch["tokens"]
        nll_BxT = token_losses(nnx.merge(graphdef, params), tokens_BxT1[:, :-1], tokens_BxT1[:, 1:], remat)
        mask_BxT = batch["mask"].astype(jnp.float32)
        return (nll_BxT * mask_BxT * batch["weight"][:, None]).sum(), mask_BxT.sum()
    return loss_fn


# --- tasks ------------------------------------------------------------------------------------------------

def round_tasks(cfg: RLConfig, round_index: int, make_tasks=None):
    """The round's training tasks: `cfg.tasks` of them, cycling over the kinds, from the round's own seed,
    asked with the request generator's training phrasings (the held-out ones stay for the eval)."""
    from training.eval import agent_tasks, phrasing_split
    seed = TRAIN_SEED + cfg.seed * 1000 + round_index
    if make_tasks is not None:
        return make_tasks(round_index, cfg.tasks, seed)
    kinds = kinds_of(cfg)
    per_kind = math.ceil(cfg.tasks / len(kinds))
    return phrasing_split.phrased(agent_tasks.make_suite(per_kind, seed, kinds)[:cfg.tasks], "seen", seed, keep=True)


def kinds_of(cfg: RLConfig) -> tuple[str, ...]:
    from training.eval import agent_tasks
    kinds = tuple(k.strip() for k in cfg.kinds.split(",") if k.strip()) or agent_tasks.ALL_KINDS
    unknown = [k for k in kinds if k not in agent_tasks.MAKERS]
    if unknown:
        raise StageError(f"unknown task kind(s) {', '.join(unknown)}; the kinds are {', '.join(agent_tasks.ALL_KINDS)}")
    return kinds


def held_out_tasks(cfg: RLConfig, make_tasks=None):
    """The unseen-phrasing half of `nanocode eval agent`'s made-up suite (seed 0, never a training seed)."""
    from training.eval import phrasing_split
    if make_tasks is not None:
        return make_tasks(-1, cfg.eval_per_kind * 4, 0)
    return phrasing_split.made_up_suites(cfg.eval_per_kind, 0, kinds_of(cfg))["unseen"]


# --- the stage ------------------------------------------------------------------------------------------

def train_rl(cfg: RLConfig, model_dir: Path | None = None, out: Path | None = None, console=None,
             make_tasks=None) -> dict:
    """Train (or resume); returns the summary also written to complete.json. make_tasks(round, n, seed) ->
    tasks replaces the agent-task suite (tests use a trivial family)."""
    import jax
    import numpy as np
    from flax import nnx
    from rich.console import Console

    from nanocode import runtime
    from nanocode.checkpoint import CheckpointError, load_model, save_model
    from nanocode.lookup import nanocode_home
    from nanocode.sampler import Sampler
    from training import mesh as meshlib
    from training.checkpointing import Checkpoints
    from training.config import fine_tune_config
    from training.eval.rollout import run_rollouts
    from training.optim import make_optimizer
    from training.train_step import abstract_state, init_state, make_train_step

    console = console or Console()
    runtime.setup_jax()
    if jax.process_count() > 1:
        raise StageError("nanocode train rl runs in one process (its rollouts run the tools on this host); "
                         "start it without --coordinator/--num-processes")
    home = nanocode_home()
    model_dir = Path(model_dir).expanduser() if model_dir else (common.newest_model("dpo-*")
                                                                 or common.newest_model("sft-*"))
    if model_dir is None:
        raise StageError(f"no DPO or SFT model found under {home / 'runs'}; run `nanocode train sft` or pass "
                         "--model DIR")
    try:
        model, tok, info = load_model(model_dir)
    except CheckpointError as e:
        raise StageError(str(e)) from e
    model_cfg = info["config"]
    out = Path(out or home / "runs" / f"rl-d{model_cfg.depth}").expanduser().absolute()
    summary = common.completed(out)
    if summary is not None:
        console.print(f"[green]RL in {out} is already complete[/] (model in {out / 'model'}); pass a new --out "
                      "to train another")
        return summary
    kinds_of(cfg)  # a bad --kinds fails before any work

    mesh = meshlib.make_mesh()
    micro_rows = cfg.device_batch * mesh.devices.size
    rows_per_round = cfg.tasks * cfg.samples
    accum = max(1, math.ceil(rows_per_round / micro_rows))
    optimizer = make_optimizer(fine_tune_config(model_cfg.depth, cfg.lr_frac, 0.0, cfg.remat, False, cfg.seed),
                               cfg.rounds)
    graphdef, params = nnx.split(model)
    params = jax.device_get(nnx.to_pure_dict(params))
    init_fn = lambda p: init_state(p, optimizer)  # noqa: E731
    abstract, shardings = abstract_state(init_fn, mesh, False, params)
    outdir.claim(out, "train rl", outdir.RUN_FILES)
    ckpt = Checkpoints(out / "ckpt", keep=cfg.keep_checkpoints, log=lambda m: console.print(f"[yellow]{m}[/]"))
    restored = ckpt.restore_latest(abstract)
    run_meta = {"config": cfg.to_dict(), "model_dir": str(model_dir.resolve())}
    if restored is not None:
        start, state, saved = restored
        common.check_resume(saved.get("config", {}), cfg.to_dict(), out, RESUMABLE_CHANGES)
        if saved.get("model_dir") != run_meta["model_dir"]:
            raise StageError(f"{out} was trained from {saved.get('model_dir')!r}, now {run_meta['model_dir']!r}; "
                             "resume with the same --model, or pass a new --out")
        console.print(f"[bold]resuming RL at round {start} of {cfg.rounds}[/]")
    else:
        start = 0
        state = jax.jit(init_fn, out_shardings=shardings)(params)
    del params, model
    # [accum, rows, ...] split along the rows, for each array of the batch
    batch_sharding = {"tokens": meshlib.batch_sharding(mesh), "mask": meshlib.batch_sharding(mesh),
                      "weight": meshlib.batch_sharding(mesh, ndim=2)}
    train_step = make_train_step(weighted_loss_fn(graphdef, cfg.remat), optimizer, shardings, batch_sharding)
    log = common.jsonl_log(out / "log.jsonl")
    log({"event": "resume" if start else "start", "round": start, **run_meta, "model": model_cfg.to_dict(),
         "jax": jax.__version__, "python": sys.version.split()[0]})

    def sampler():
        return Sampler(nnx.merge(graphdef, state["params"]))

    def evaluate(round_index: int) -> dict:
        tasks = held_out_tasks(cfg, make_tasks)
        rollouts, _ = run_rollouts(tasks, sampler(), tok, samples=1, temperature=0.0, max_steps=cfg.max_steps,
                                   max_reply_tokens=cfg.max_reply_tokens, deadline_s=cfg.deadline_s, seed=cfg.seed)
        for r in rollouts:
            r.reward = reward(r, cfg)
        result = {"event": "held_out", "round": round_index, **rollout_stats(rollouts, cfg)}
        log(result)
        console.print(f"held out after {round_index} rounds: success {result['success_rate']:.3f} "
                      f"({len(rollouts)} tasks), repeated failed calls {result['repeated_failure_rate']:.3f}")
        return result

    first_eval = evaluate(start) if start == 0 else None
    started = time.perf_counter()
    last_round = cfg.rounds
    try:
        for round_index in range(start, cfg.rounds):
            t0 = time.perf_counter()
            tasks = round_tasks(cfg, round_index, make_tasks)
            rollouts, speed = run_rollouts(tasks, sampler(), tok, samples=cfg.samples, temperature=cfg.temperature,
                                           top_p=cfg.top_p if cfg.top_p < 1 else None, max_steps=cfg.max_steps,
                                           max_reply_tokens=cfg.max_reply_tokens, deadline_s=cfg.deadline_s,
                                           seed=cfg.seed * 100_003 + round_index)
            for r in rollouts:
                r.reward = reward(r, cfg)
            weights = advantages(rollouts, cfg.method)
            tokens, mask, weight = training_rows(rollouts, weights, tok, model_cfg.seq_len)
            # Fixed shapes [accum, micro_rows, L+1]: rows past the round's are zero-weight padding.
            total = accum * micro_rows
            if len(tokens) > total:  # cannot happen (one row per rollout), but never drop silently
                raise StageError(f"{len(tokens)} training rows exceed the round's {total}")
            pad = total - len(tokens)
            L1 = tokens.shape[1]
            tokens = np.concatenate([tokens, np.full((pad, L1), tok.special("bos"), np.int32)])
            mask = np.concatenate([mask, np.zeros((pad, L1 - 1), np.int8)])
            weight = np.concatenate([weight, np.zeros(pad, np.float32)])
            batch = {k: jax.device_put(v.reshape(accum, micro_rows, *v.shape[1:]), batch_sharding[k])
                     for k, v in (("tokens", tokens), ("mask", mask), ("weight", weight))}
            if mask.sum() == 0:  # nothing to learn this round (every group tied): keep the step count moving
                state = {**state, "step": state["step"] + 1}
                loss = 0.0
            else:
                state, metrics = train_step(state, batch)
                loss = float(jax.device_get(metrics["loss"]))
                if not math.isfinite(loss):
                    raise ckpt.diverged(round_index, f"the loss became {loss} in round {round_index}",
                                        "lower --lr-frac")
            done = round_index + 1
            stats = rollout_stats(rollouts, cfg)
            elapsed = time.perf_counter() - t0
            eta = (time.perf_counter() - started) / (done - start) * (cfg.rounds - done)
            log({"round": done, **stats, "loss": loss, "trained_rows": int((weight != 0).sum()), **speed,
                 "round_s": round(elapsed, 2)})
            console.print(f"round {done:>3}/{cfg.rounds} | success {stats['success_rate']:.3f} | reward "
                          f"{stats['mean_reward']:+.3f} | {speed['tokens_per_s']:.0f} tok/s | "
                          f"{speed['rollouts_per_min']:.0f} rollouts/min ({speed['decode_s']:.0f} of {speed['seconds']:.0f} s "
                          f"decoding) | ETA {eta / 60:.1f} min")
            if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.rounds:
                evaluate(done)
            ckpt.save(done, state, {"step": done, **run_meta})
            if cfg.max_minutes and time.perf_counter() - started >= 60 * cfg.max_minutes and done < cfg.rounds:
                console.print(f"[yellow]--max-minutes {cfg.max_minutes} reached after {done} of {cfg.rounds} "
                              "rounds; ending the run here[/]")
                last_round = done
                break
        ckpt.wait()
    finally:
        ckpt.close()

    final = evaluate(last_round)
    summary = {"rounds": last_round, "planned_rounds": cfg.rounds, "first": first_eval, "final": final, "model": "model",
               "from": str(model_dir), "config": cfg.to_dict()}
    save_model(out / "model", jax.device_get(state["params"]), tok, model_cfg,
               meta={"stage": "rl", "from": str(model_dir), "rounds": last_round, "held_out": final,
                     "project_notes": info["meta"].get("project_notes", False),
                     "rl_config": cfg.to_dict()})
    common.write_json(out / common.COMPLETE, summary)
    common.publish(out / "model", out.name)
    log({"event": "complete", **summary})
    console.print(f"[green]done[/]: model in {out / 'model'}")
    return summary


def rollout_stats(rollouts, cfg: RLConfig) -> dict:
    n = max(len(rollouts), 1)
    calls = sum(len(r.calls) + r.malformed for r in rollouts)
    kinds = sorted({r.kind for r in rollouts})
    return {
        "success_rate": sum(r.success for r in rollouts) / n,
        "success_by_kind": {k: sum(r.success for r in rollouts if r.kind == k) /
                            sum(r.kind == k for r in rollouts) for k in kinds},
        "mean_reward": sum(r.reward for r in rollouts) / n,
        "well_formed_call_rate": 1 - sum(r.malformed for r in rollouts) / calls if calls else None,
        "repeated_failure_rate": sum(r.repeated_failures for r in rollouts) / calls if calls else 0.0,
        "turn_ends": {e: sum(r.end == e for r in rollouts) for e in sorted({r.end for r in rollouts})},
    }


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        train_rl(from_preset(a.preset, **common.config_overrides(a, RLConfig)), a.model, a.out)
    except StageError as e:
        return common.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
