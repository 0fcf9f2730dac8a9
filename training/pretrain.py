"""`nanocode train base`: pretraining, top to bottom (nanochat's base_train in JAX).

    nanocode train base --preset cpu                 # ~10 minutes on a laptop
    nanocode train base --preset gpu --depth 12      # one GPU
    python -m training.pretrain --preset gpu         # the same without the CLI (e.g. on a GPU box)

What it writes into --out (default $NANOCODE_HOME/runs/base-d{depth}; a new, empty or earlier run's directory,
written by one process at a time: training/outdir.py):
    ckpt/           Orbax CheckpointManager: params + optimiser state + step, every --save-every steps
    log.jsonl       one JSON object per line: the run's settings, every step's loss, evals, samples
    model/          the inference model directory (nanocode.checkpoint), written at the end
    complete.json   written last: the stage is done (a rerun, or the speedrun, skips it)

Resuming: rerun the same command on the same --out. The newest checkpoint that restores completely is
loaded and training continues with exactly the batches it would have used: the loader is a pure function
of (seed, step, process), the schedules are functions of the step, and nothing else is random.
"""
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training import common, outdir
from training.common import COMPLETE, StageError
from training.config import TrainConfig, from_preset


def flags() -> common.Flags:
    """Every TrainConfig field is a flag (default: the preset's); the rest say where things are."""
    p = common.Flags(prog="nanocode train base", description="Pretrain a base model on the token "
                                "shards (resumable: rerun the same command after a crash).")
    p.add_argument("--preset", help="test (seconds), cpu (~10 min on a laptop), gpu (one GPU); default: gpu when "
                   "JAX sees an accelerator, else cpu.")
    p.add_argument("--out", type=Path, help="Run directory (default: $NANOCODE_HOME/runs/base-d{depth}); rerun the "
                   "same command on it to resume.")
    p.add_argument("--data", type=Path, help="Token shards (default: $NANOCODE_HOME/data/tokens).")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json or its directory (default: "
                   "$NANOCODE_HOME/tokenizer).")
    common.config_flags(p, TrainConfig, {
        "depth": "Model depth; sets the width and, on token-budget presets, the number of steps.",
        "steps": "Optimiser steps (0: from --tokens-per-param).",
        "seq_len": "Context length of the training rows.",
        "device_batch": "Sequences per device per micro-step.",
        "total_batch": "Tokens per optimiser step (all devices; gradient accumulation makes up the difference).",
        "matrix_lr": "Muon learning rate.",
        "embedding_lr": "AdamW learning rate of the embedding.",
        "unembedding_lr": "AdamW learning rate of the head.",
        "fim_rate": "Fraction of documents in FIM form.",
        "eval_every": "Steps between validation bits/byte.",
        "save_every": "Steps between checkpoints.",
        "sample_every": "Steps between samples (0: at the end).",
        "remat": "none, dots or full: trade compute for memory.",
        "residual_dtype": "auto (the compute dtype: bf16 on GPU), float32 or bfloat16.",
        "matmul_dtype": "The matmuls' input dtype: auto (bf16 on GPU, and on CPUs with bf16 dot instructions), "
                        "float32 or bfloat16.",
        "fsdp": "Shard parameters and optimiser state over the devices (for models that do not fit one).",
        "seed": "Initialisation and data-order seed.",
    })
    common.multi_host_flags(p)
    return p


# Fields that may change between a run and its resumption: they decide neither the batches nor the math.
RESUMABLE_CHANGES = {"eval_every", "eval_tokens", "sample_every", "save_every", "keep_checkpoints", "log_every",
                     "remat", "fsdp", "device_batch", "muon_stack"}
SAMPLE_PROMPTS = ("def fibonacci(n):", "import os\n\n\ndef list_python_files(root):",
                  "class Stack:\n    \"\"\"A last-in first-out stack.\"\"\"\n", "The purpose of this module is")


def default_preset(coordinator: str | None, num_processes: int | None) -> str:
    """gpu when JAX sees an accelerator, else cpu. A multi-host run is gpu: asking JAX for its backend now
    would start it before jax.distributed can."""
    if coordinator or num_processes or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return "gpu"
    import jax
    return "cpu" if jax.default_backend() == "cpu" else "gpu"


def default_out(cfg: TrainConfig) -> Path:
    from nanocode.lookup import nanocode_home
    return nanocode_home() / "runs" / f"base-d{cfg.depth}"


def train_base(cfg: TrainConfig, out: Path | None = None, data: Path | None = None, tokenizer: Path | None = None,
               coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               console=None) -> dict:
    """Pretrain (or resume) a base model; returns the summary also written to complete.json."""
    import jax
    from flax import nnx
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from nanocode import runtime
    from nanocode.lookup import nanocode_home
    from nanocode.checkpoint import save_model
    from nanocode.model import GPT
    from nanocode.tokenizer import Tokenizer, TokenizerError
    from training import mesh as meshlib
    from training.checkpointing import Checkpoints
    from training.eval.bpb import BpbEvaluator
    from training.loader import Loader
    from training.optim import lr_multiplier, make_optimizer
    from training.data.shards import TokenizerMismatch, file_sha256, read_meta, tokenizer_file
    from training.train_step import abstract_state, init_state, lm_loss_fn, make_train_step

    console = console or Console()
    home = nanocode_home()
    out = Path(out or default_out(cfg)).expanduser().absolute()
    data = Path(data or home / "data" / "tokens").expanduser()
    tokenizer_path = tokenizer_file(Path(tokenizer or home / "tokenizer").expanduser())

    # --- where we are: finished already? ------------------------------------------------------------
    summary = common.completed(out)
    if summary is not None:
        console.print(f"[green]base pretraining in {out} is already complete[/] (step {summary.get('step')}, "
                      f"model in {out / 'model'}); pass a new --out to train another")
        return summary

    # --- hosts, devices, data ------------------------------------------------------------------------
    meshlib.init_distributed(coordinator, num_processes, process_id)
    runtime.setup_jax()
    primary = jax.process_index() == 0
    if primary:  # the job's one writer (the other hosts write only their shards of the checkpoints)
        outdir.claim(out, "train base", outdir.RUN_FILES)
    try:
        tok = Tokenizer.load(tokenizer_path)
        meta = read_meta(data, tokenizer_path)
    except (TokenizerError, FileNotFoundError, TokenizerMismatch) as e:
        raise StageError(f"{e} (token shards: --data {data}, tokenizer: --tokenizer {tokenizer_path})") from e
    except (json.JSONDecodeError, KeyError) as e:
        raise StageError(f"{data}/meta.json is damaged ({e}); rebuild the shards with `nanocode data shards`") from e
    if meta["vocab_size"] != tok.vocab_size:
        raise StageError(f"the shards in {data} have vocab size {meta['vocab_size']}, the tokenizer "
                         f"{tokenizer_path} {tok.vocab_size}; rebuild the shards with `nanocode data shards`")
    vocab = tok.vocab_size
    mesh = meshlib.make_mesh()
    n_dev = mesh.devices.size
    accum = cfg.grad_accum(n_dev)
    num_steps = cfg.total_steps(vocab)
    global_rows = cfg.total_batch // cfg.seq_len          # rows per optimiser step, all hosts
    local_rows = global_rows // jax.process_count()
    try:
        loader = Loader(data, local_rows, cfg.seq_len, "train", fim_rate=cfg.fim_rate, seed=cfg.seed,
                        process_index=jax.process_index(), process_count=jax.process_count())
    except ValueError as e:
        raise StageError(f"{data}: {e}") from e

    # --- model, optimiser, state (restored when a checkpoint exists) ----------------------------------
    model_cfg = cfg.model_config(vocab)
    optimizer = make_optimizer(cfg, num_steps)
    # The residual and matmul dtypes are runtime choices that live in the graphdef (the parameters are the
    # same): the train step and the evaluator use them; the sampler builds its own fp32 copy.
    graphdef = nnx.split(nnx.eval_shape(lambda: GPT(model_cfg, rngs=nnx.Rngs(cfg.seed),
                                                    residual_dtype=cfg.residual_jnp_dtype(),
                                                    matmul_dtype=cfg.matmul_jnp_dtype())))[0]

    def build():
        return init_state(nnx.split(GPT(model_cfg, rngs=nnx.Rngs(cfg.seed)))[1].to_pure_dict(), optimizer)

    abstract, shardings = abstract_state(build, mesh, cfg.fsdp)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoints(out / "ckpt", keep=cfg.keep_checkpoints, log=lambda m: console.print(f"[yellow]{m}[/]"))
    restored = ckpt.restore_latest(abstract)
    if restored is not None:
        start, state, saved = restored
        saved_cfg = saved.get("config", {})  # a field newer than the checkpoint is not compared: it kept its default
        common.check_resume(saved_cfg, {k: v for k, v in cfg.to_dict().items() if k in saved_cfg}, out,
                            RESUMABLE_CHANGES)
        if saved.get("tokenizer_sha256") != file_sha256(tokenizer_path):
            raise StageError(f"{out} was trained with a different tokenizer than {tokenizer_path}; resume with "
                             "the same --tokenizer and --data, or pass a new --out")
        if saved.get("data_sha256") not in (None, file_sha256(data / "meta.json")):
            console.print(f"[yellow]warning: the token shards in {data} changed since this run started; from step "
                          f"{start} on it trains on the new data, not on the batches it would have seen[/]")
        console.print(f"[bold]resuming from step {start} of {num_steps}[/] ({out / 'ckpt' / str(start)}): the "
                      "same batches and schedule as an uninterrupted run")
    else:
        start = 0
        state = jax.jit(build, out_shardings=shardings)()
    batch_sharding = meshlib.batch_sharding(mesh)
    train_step = make_train_step(lm_loss_fn(graphdef, remat=cfg.remat), optimizer, shardings, batch_sharding)
    evaluator = BpbEvaluator(graphdef, data, tok.token_byte_lengths, cfg.seq_len,
                             cfg.device_batch * n_dev, cfg.eval_tokens, mesh)

    flops_per_token = model_cfg.flops_per_token()
    peak, peak_what = common.device_peak_flops(jax.devices()[0])
    log = common.jsonl_log(out / "log.jsonl", primary)

    log({"event": "resume" if start else "start", "step": start, "config": cfg.to_dict(), "model": model_cfg.to_dict(),
         "num_steps": num_steps, "grad_accum": accum, "devices": n_dev, "processes": jax.process_count(),
         "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__, "python": sys.version.split()[0],
         "params": model_cfg.num_params(), "flops_per_token": flops_per_token, "peak_flops": peak,
         "data": str(data), "train_tokens": loader.n_tokens})
    if start == 0:
        total = num_steps * cfg.total_batch
        console.print(f"base pretraining: depth {cfg.depth} ({model_cfg.num_params():,} params, vocab {vocab}), "
                      f"{num_steps} steps of {cfg.total_batch:,} tokens = {total:,} tokens "
                      f"({total / model_cfg.num_params():.2f} per parameter) on {n_dev} device(s), gradient "
                      f"accumulation {accum}; the data holds {loader.n_tokens:,} tokens")

    def evaluate(step: int) -> dict:
        result = evaluator(state["params"])
        if result["bpb"]:
            log({"step": step, **{f"val_bpb_{k}": v for k, v in result["bpb"].items()}})
            console.print(f"step {step}: validation bits/byte " +
                          ", ".join(f"{k} {v:.4f}" for k, v in result["bpb"].items()))
        else:
            console.print(f"step {step}: no validation documents in {data}; skipping bits per byte")
        return result

    def samples(step: int) -> None:
        if jax.process_count() > 1:
            return  # the sampler runs on one host's devices; a multi-host run's params span hosts
        from nanocode.sampler import Sampler
        sampler = Sampler(nnx.merge(graphdef, state["params"]))
        bos = tok.special("bos")
        for prompt in SAMPLE_PROMPTS:
            ids = sampler.generate([bos] + tok.encode(prompt), 48, temperature=0.0)
            text = prompt + tok.decode(ids)
            log({"step": step, "sample": text})
            console.print(f"[dim]sample @ {step}:[/] {text!r}")

    def micro_batches(step: int):
        rows = loader.batch(step).reshape(accum, local_rows // accum, cfg.seq_len + 1)
        return {"tokens": meshlib.global_batch(rows, batch_sharding, (accum, global_rows // accum, cfg.seq_len + 1))}

    # --- the loop ------------------------------------------------------------------------------------
    # The loader runs one step ahead in a thread; metrics are read one step late. Neither the host nor the
    # device waits for the other, and every step's loss still reaches the log.
    # On a terminal a live progress line shows loss, tok/s, MFU and ETA; elsewhere (logs, CI) a plain line
    # every --log-every steps does.
    progress = Progress(TextColumn("[bold]base[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), console=console, disable=not console.is_terminal)
    task = progress.add_task("train", total=num_steps, completed=start, stats="compiling...")
    tokenizer_sha, data_sha = file_sha256(tokenizer_path), file_sha256(data / "meta.json")
    prefetch = ThreadPoolExecutor(max_workers=1)
    next_batch = prefetch.submit(micro_batches, start) if start < num_steps else None
    pending = None  # (step, metrics) not yet read
    t_last, steps_timed, step_times = time.perf_counter(), 0, []
    losses = []

    def read_metrics(step: int, metrics) -> None:
        nonlocal t_last, steps_timed
        m = jax.device_get(metrics)
        now = time.perf_counter()
        steps_timed += 1
        dt = (now - t_last) / steps_timed
        loss = float(m["loss"])
        if not math.isfinite(loss):
            raise ckpt.diverged(step, f"the loss became {loss} at step {step}")
        losses.append(loss)
        tok_s = cfg.total_batch / dt
        mfu = 100 * flops_per_token * tok_s / (n_dev * peak)
        lr = float(lr_multiplier(step, num_steps, cfg.warmup_ratio, cfg.warmdown_ratio, cfg.final_lr_frac))
        log({"step": step, "loss": loss, "grad_norm": float(m["grad_norm"]), "lr_mult": lr,
             "tokens_per_s": tok_s, "mfu": mfu, "step_s": dt, "tokens": (step + 1) * cfg.total_batch})
        step_times.append(dt)
        eta = (num_steps - step - 1) * (sum(step_times[-20:]) / len(step_times[-20:]))
        stats = f"loss {loss:.4f} | lr x{lr:.2f} | {tok_s:,.0f} tok/s | MFU {mfu:.1f}% | ETA {eta / 60:.1f} min"
        progress.update(task, completed=step + 1, stats=stats)
        if not console.is_terminal and ((step + 1) % cfg.log_every == 0 or step + 1 == num_steps):
            console.print(f"step {step + 1:>6}/{num_steps} | {stats}")

    def reset_timer():
        nonlocal t_last, steps_timed
        t_last, steps_timed = time.perf_counter(), 0

    try:
        progress.start()
        for step in range(start, num_steps):
            batch = next_batch.result()
            if step + 1 < num_steps:
                next_batch = prefetch.submit(micro_batches, step + 1)
            state, metrics = train_step(state, batch)
            if pending is not None:
                read_metrics(*pending)
            pending = (step, metrics)
            done = step + 1
            boundary = (cfg.save_every and done % cfg.save_every == 0) or done == num_steps
            evaluating = cfg.eval_every and done % cfg.eval_every == 0 and done < num_steps
            sampling = cfg.sample_every and done % cfg.sample_every == 0 and done < num_steps
            if boundary or evaluating or sampling:
                read_metrics(*pending)
                pending = None
                if evaluating:
                    evaluate(done)
                if sampling:
                    samples(done)
                if boundary:
                    ckpt.save(done, state, {"step": done, "config": cfg.to_dict(), "num_steps": num_steps,
                                            "tokens_seen": done * cfg.total_batch,
                                            "tokenizer_sha256": tokenizer_sha, "data_sha256": data_sha})
                reset_timer()
        if pending is not None:
            read_metrics(*pending)
        ckpt.wait()
    finally:
        progress.stop()
        prefetch.shutdown(wait=True, cancel_futures=True)
        ckpt.close()

    # --- the end: final eval, samples, the model directory, the completion marker ---------------------
    final = evaluate(num_steps)
    samples(num_steps)
    params = state["params"]
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        params = multihost_utils.process_allgather(params, tiled=True)
    summary = {"step": num_steps, "tokens": num_steps * cfg.total_batch, "val_bpb": final["bpb"],
               "final_loss": losses[-1] if losses else None, "model": "model", "config": cfg.to_dict(),
               "peak": peak_what}
    if primary:
        save_model(out / "model", jax.device_get(params), tok, model_cfg,
                   meta={"stage": "base", "steps": num_steps, "tokens": summary["tokens"],
                         "val_bpb": final["bpb"], "train_config": cfg.to_dict()})
        (out / COMPLETE).write_text(json.dumps(summary, indent=2) + "\n")
    log({"event": "complete", **summary})
    console.print(f"[green]done[/]: model in {out / 'model'}")
    return summary


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        cfg = from_preset(a.preset or default_preset(a.coordinator, a.num_processes),
                          **common.config_overrides(a, TrainConfig))
        train_base(cfg, a.out, a.data, a.tokenizer, a.coordinator, a.num_processes, a.process_id)
    except StageError as e:
        return common.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
