"""`nanocode bench train`: training throughput on random tokens, through the real train step.

    python -m training.bench_train --depth 12 --batch 32 --seq 2048
    python -m training.bench_train --depth 12 --remat none,dots --muon-dtype float32,bfloat16   # a table
    python -m training.bench_train --residual float32,bfloat16 --repeat 2          # round-robin, twice
    python -m training.bench_train --rope-impl flip,pallas --check-rope --repeat 2
    python -m training.bench_train --profile --dump-hlo DIR

Reports tokens/s, model TFLOP/s with nanochat's accounting (6 x matmul parameters + 12 x layers x
heads x head_dim x T per token, forward + backward; the embedding lookup is not a matmul), MFU against
the card's dense bf16 peak (on CPU: against a measured fp32 matmul), and memory. `--batch` is per device:
with several devices the mesh runs data parallel (or FSDP) and the tokens/s are the global figure.
`--breakdown` also times the forward pass, forward + backward and the optimiser update alone; `--profile`
prints where the accelerator's time goes (from a jax.profiler trace). `--check-rope` compares each
`--rope-impl` form of nanocode/ops.qkv_heads with the reference (model.split_heads + JAX's autodiff) on
this backend before timing.

What each change bought, measured with this script (commands, tables, negative results): training/LOG.md.
Last figures there (2026-11-22): one H200, depth 12, B=32, T=2048, vocab 32768: 112.0-113.0 ms per step,
515-519 model TFLOP/s (nanochat's torch.compile trainer: 124.5 ms); the 2-core CPU, depth 4, B=8, T=512:
1,537-1,589 ms (nanochat's eager fp32 trainer: 3.15 s).
"""
import argparse
import itertools
import json
import resource
import sys
import time

def _time(fn, *args, steps: int, warmup: int = 2):
    import jax
    for _ in range(warmup):
        out = fn(*args)
    jax.block_until_ready(out)
    t = time.perf_counter()
    for _ in range(steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / steps


def _kernel_kind(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("cudnn", "fmha", "flash", "sdpa")):
        return "attention"
    if any(k in n for k in ("gemm", "nvjet", "xmma", "cutlass", "cublas", "matmul", "triton_dot")):
        return "matmul"
    if "reduce" in n or "reduction" in n:
        return "reduction"
    if "memcpy" in n or "memset" in n or "copy" in n:
        return "copy"
    return "elementwise"


def profile_step(fn, args, steps: int = 3, top: int = 25, echo=print, table_path: str | None = None):
    """Trace `steps` calls with jax.profiler and print where the accelerator's time went, per step: by
    kind of kernel, then the HLO ops that took longest (parsed straight from the trace with
    jax.profiler.ProfileData; no TensorBoard needed). Give it a program compiled without CUDA command
    buffers (bench_one does) to see individual HLO ops instead of the CUDA graphs that hold them.
    Returns the last call's output (`fn` may donate its arguments)."""
    import glob
    import tempfile

    import jax
    from jax.profiler import ProfileData
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(steps):
                args = fn(*args)
            jax.block_until_ready(args)
        path = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0]
        data = ProfileData.from_file(path)
    by_op: dict[tuple[str, str], float] = {}  # (hlo op, kernel kind) -> ms per step
    kernels: dict[tuple[str, str], str] = {}
    spans = []  # (start, end, hlo op) of every kernel on the device's streams: the idle time between them
    for plane in data.planes:
        if not plane.name.startswith("/device:"):
            continue
        for line in plane.lines:
            if "stream" not in line.name.lower():
                continue
            for ev in line.events:
                stats = dict(ev.stats)
                key = (str(stats.get("hlo_op") or ev.name), _kernel_kind(ev.name))
                by_op[key] = by_op.get(key, 0.0) + ev.duration_ns / 1e6 / steps
                kernels.setdefault(key, ev.name)
                spans.append((ev.start_ns, ev.end_ns, key[0]))
    if not by_op:
        echo("profile: no accelerator kernels in the trace (CPU run?)")
        return args
    kinds: dict[str, float] = {}
    for (_, kind), ms in by_op.items():
        kinds[kind] = kinds.get(kind, 0.0) + ms
    total = sum(by_op.values())
    echo(f"profile: {total:.2f} ms of kernels per step: " +
         ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
    spans.sort()
    busy_end, idle, after = spans[0][1] if spans else 0, 0.0, {}
    for start, end, op in spans[1:]:
        if start > busy_end:  # the device ran nothing between busy_end and start
            gap = (start - busy_end) / 1e6 / steps
            idle += gap
            after[op] = after.get(op, 0.0) + gap
        busy_end = max(busy_end, end)
    if spans:
        wall = (spans[-1][1] - spans[0][0]) / 1e6 / steps
        echo(f"profile: {wall:.2f} ms from the first kernel to the last per step, {idle:.2f} ms of it idle; "
             "idle before: " + ", ".join(f"{op} {ms:.2f}" for op, ms in sorted(after.items(), key=lambda kv: -kv[1])[:6]))
    rows = sorted(by_op.items(), key=lambda kv: -kv[1])
    for (op, kind), ms in rows[:top]:
        echo(f"  {ms:8.3f} ms {100 * ms / total:5.1f}%  {kind:11s} {op[:48]:48s} {kernels[(op, kind)][:60]}")
    if table_path:
        with open(table_path, "w") as fh:
            for (op, kind), ms in rows:
                fh.write(f"{ms:.4f}\t{kind}\t{op}\t{kernels[(op, kind)]}\n")
    return args


def bench_one(depth: int, batch: int, seq: int, vocab: int, steps: int, remat: str, muon_dtype: str,
              fsdp: bool, breakdown: bool, muon_stack: bool = True, profile: bool = False,
              dump_hlo: str | None = None, devices: int | None = None, residual: str | None = None,
              rope_impl: str = "auto", ce_impl: str = "auto", xla_opts: str = "", matmul: str | None = None) -> dict:
    """One configuration: compile, warm up, time `steps` optimiser steps (one micro-batch each).
    residual: TrainConfig.residual_dtype (None: its default). rope_impl: the form of ops.qkv_heads the
    step is traced with (ops.qkv_form)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nanocode import ops
    from nanocode.model import GPT
    from training import mesh as meshlib
    from training.config import TrainConfig
    from training.optim import make_optimizer
    from training.train_step import init_state, lm_loss_fn, make_train_step, sharded_init

    options = {k: {"true": True, "false": False}.get(v.lower(), int(v) if v.isdigit() else v)
               for k, v in (kv.split("=", 1) for kv in xla_opts.split(";") if kv)}
    mesh = meshlib.make_mesh(jax.devices()[:devices] if devices else None)
    n_dev = mesh.devices.size
    cfg = TrainConfig(depth=depth, seq_len=seq, device_batch=batch, total_batch=batch * seq,
                      remat=remat, muon_dtype=muon_dtype, muon_stack=muon_stack, fsdp=fsdp,
                      **({} if residual is None else {"residual_dtype": residual}),
                      **({} if matmul is None else {"matmul_dtype": matmul}))
    model_cfg = cfg.model_config(vocab)
    optimizer = make_optimizer(cfg, num_steps=1000)

    graphdef = nnx.split(nnx.eval_shape(lambda: GPT(model_cfg, rngs=nnx.Rngs(0), residual_dtype=cfg.residual_jnp_dtype(),
                                                    matmul_dtype=cfg.matmul_jnp_dtype())))[0]

    def build():
        params = nnx.split(GPT(model_cfg, rngs=nnx.Rngs(0)))[1].to_pure_dict()
        return init_state(params, optimizer)
    state, shardings = sharded_init(build, mesh, fsdp)
    batch_sharding = meshlib.batch_sharding(mesh)
    global_rows = batch * n_dev
    tokens = jax.jit(lambda key: {"tokens": jax.random.randint(key, (1, global_rows, seq + 1), 0, vocab, jnp.int32)},
                     out_shardings=batch_sharding)(jax.random.key(1))
    loss_fn = lm_loss_fn(graphdef, remat=remat, ce_impl=ce_impl)
    step = make_train_step(loss_fn, optimizer, shardings, batch_sharding)

    with ops.qkv_form(rope_impl):  # every trace of the model below (the step, --breakdown, --profile)
        tag = f"d{depth}_b{batch}_t{seq}_{remat}_{cfg.residual_dtype}_{rope_impl}_{ce_impl}"  # dump file names
        t = time.perf_counter()
        compiled = step.lower(state, tokens).compile(compiler_options=options or None)
        compile_s = time.perf_counter() - t
        if dump_hlo:
            with open(f"{dump_hlo}/step_{tag}.hlo.txt", "w") as fh:
                fh.write(compiled.as_text())
        mem = compiled.memory_analysis()
        static_bytes = None
        if mem is not None:
            static_bytes = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes \
                - mem.alias_size_in_bytes
        for _ in range(2):  # warm up (first calls allocate)
            state, metrics = compiled(state, tokens)
        jax.block_until_ready(state)
        t = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, tokens)
        loss = float(metrics["loss"])
        dt = (time.perf_counter() - t) / steps
        tok_s = global_rows * seq / dt
        flops = model_cfg.flops_per_token() * tok_s
        from training.common import device_peak_flops
        peak, peak_what = device_peak_flops(jax.devices()[0])
        stats = jax.devices()[0].memory_stats() or {}
        row = dict(depth=depth, batch=batch, seq=seq, vocab=vocab, devices=n_dev, remat=remat, muon_dtype=muon_dtype,
                   muon_stack=muon_stack, fsdp=fsdp, residual=cfg.residual_dtype, rope_impl=rope_impl, ce_impl=ce_impl,
                   matmul=cfg.matmul_jnp_dtype().name, xla_opts=xla_opts, step_ms=round(dt * 1e3, 2), tok_s=round(tok_s),
                   tflops=round(flops / 1e12, 3),
                   tflops_per_device=round(flops / n_dev / 1e12, 3), mfu=round(flops / n_dev / peak, 4),
                   peak=peak_what, compile_s=round(compile_s, 1), loss=round(loss, 4),
                   params_m=round(model_cfg.num_params() / 1e6, 1),
                   static_mem_gb=None if static_bytes is None else round(static_bytes / 2 ** 30, 2),
                   peak_mem_gb=round(stats["peak_bytes_in_use"] / 2 ** 30, 2) if "peak_bytes_in_use" in stats
                   else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2))
        if breakdown:
            params = state["params"]
            fwd = jax.jit(lambda p, b: loss_fn(p, jax.tree.map(lambda x: x[0], b))[0])
            grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, jax.tree.map(lambda x: x[0], b))[0]))
            upd = jax.jit(optimizer.update)
            grads = grad(params, tokens)
            row["fwd_ms"] = round(_time(fwd, params, tokens, steps=steps) * 1e3, 2)
            row["fwd_bwd_ms"] = round(_time(grad, params, tokens, steps=steps) * 1e3, 2)
            row["optim_ms"] = round(_time(upd, grads, state["opt"], params, steps=steps) * 1e3, 2)
        if profile:
            # A copy without CUDA command buffers, so the trace names each HLO op (the timed program keeps them).
            traced = step.lower(state, tokens).compile(compiler_options={**options, "xla_gpu_enable_command_buffer": ""})
            state, _ = profile_step(lambda st, tk: (traced(st, tk)[0], tk), (state, tokens), table_path=dump_hlo and
                                    f"{dump_hlo}/profile_{tag}.tsv")
            print("profile of the timed program (command buffers as compiled):")
            state, _ = profile_step(lambda st, tk: (compiled(st, tk)[0], tk), (state, tokens), top=5)
        del state, tokens
    return row


def check_rope(depth: int, batch: int, seq: int, impls, echo=print) -> list[dict]:
    """Each form's q, k, v and dL/dqkv (ops.qkv_heads) against the reference, model.split_heads with JAX's
    autodiff, at this depth's head shapes in the compute dtype, on random data: the largest difference
    relative to the reference's largest value, per output. A check of the kernels on this machine's backend
    (the CPU tests check the same in fp32 and bf16)."""
    from functools import partial

    import jax
    import jax.numpy as jnp

    from nanocode import ops, runtime
    from nanocode.model import ModelConfig, split_heads
    runtime.setup_jax()
    c = ModelConfig(depth=depth, vocab_size=256, seq_len=seq)
    N, K, H, base, dt = c.n_head, c.n_kv_head, c.head_dim_, c.rope_base, runtime.compute_dtype()
    keys = jax.random.split(jax.random.key(0), 4)
    qkv = (3 * jax.random.normal(keys[0], (batch, seq, (N + 2 * K) * H), jnp.float32)).astype(dt)
    pos = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq))
    cts = tuple(jax.random.normal(k, (batch, seq, m, H), jnp.float32).astype(dt) for k, m in zip(keys[1:], (N, K, K)))

    def outputs(heads, qkv, pos, cts):  # the arrays as arguments: closed over, jit would embed them as constants
        out, vjp = jax.vjp(lambda x: heads(x, pos), qkv)
        return (*out, vjp(cts)[0])
    ref = jax.jit(partial(outputs, lambda x, p: split_heads(x, p, N, K, H, base)))(qkv, pos, cts)
    rows = []
    for impl in impls:
        row = {"check": "rope", "rope_impl": impl, "dtype": jnp.dtype(dt).name}
        try:
            got = jax.jit(partial(outputs, lambda x, p, impl=impl: ops.qkv_heads(x, p, N, K, H, base, impl)))(
                qkv, pos, cts)
        except Exception as e:  # noqa: BLE001 - a kernel that does not build here must not end the benchmark
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            got = ()
        for name, a, b in zip(("q", "k", "v", "dqkv"), got, ref):
            a, b = a.astype(jnp.float32), b.astype(jnp.float32)
            row[name] = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        rows.append(row)
        echo(json.dumps(row))
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ["depth", "batch", "seq", "devices", "remat", "muon_dtype", "muon_stack", "fsdp", "residual",
            "rope_impl", "ce_impl", "matmul", "xla_opts", "step_ms", "tok_s", "tflops",
            "mfu", "compile_s", "static_mem_gb", "peak_mem_gb", "fwd_ms", "fwd_bwd_ms", "optim_ms"]
    cols = [c for c in cols if any(c in r for r in rows)]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).rjust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def run(depth=(12,), batch=(32,), seq=(2048,), vocab=32768, steps=10, remat=("none",), muon_dtype=("auto",),
        fsdp=(False,), breakdown=False, jsonl=None, echo=print, muon_stack=(True,), profile=False, dump_hlo=None,
        devices=(None,), residual=(None,), rope_impl=("auto",),
        repeat=1, ce_impl=("auto",), xla_opts=("",), matmul=(None,)) -> list[dict]:
    """Every combination of the list arguments, `repeat` times round (A B A B, not A A B B: a drift of the
    machine's speed then shows as a difference between rounds, not between variants)."""
    import jax
    from nanocode import runtime
    runtime.setup_jax()
    echo(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}), "
         f"jax {jax.__version__}")
    rows = []
    axes = dict(devices=devices, depth=depth, batch=batch, seq=seq, remat=remat, muon_dtype=muon_dtype, fsdp=fsdp,
                muon_stack=muon_stack, residual=residual, rope_impl=rope_impl,
                ce_impl=ce_impl, xla_opts=xla_opts, matmul=matmul)  # bench_one's arguments, a list of values each
    variants = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    for _, variant in itertools.product(range(repeat), variants):
        try:
            row = bench_one(vocab=vocab, steps=steps, breakdown=breakdown, profile=profile, dump_hlo=dump_hlo,
                            **variant)
        except Exception as e:  # noqa: BLE001 - one failing variant (e.g. out of memory) must not end the table
            row = dict(variant, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        rows.append(row)
        echo(json.dumps(row))
        if jsonl:
            with open(jsonl, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    ok = [r for r in rows if "error" not in r]
    if ok:
        echo(format_table(ok))
    return rows


def _list(kind):
    return lambda s: [kind(x) for x in s.split(",")]


def main(argv=None) -> int:
    """The command line (also `nanocode bench train ARGS`): 0 when every run worked, 1 when one failed, 2
    (argparse) on bad flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", default="12", help="model depth; a comma list compares (e.g. 12,20)")
    p.add_argument("--batch", default="32", help="sequences per device; a comma list compares")
    p.add_argument("--seq", default="2048", help="sequence length; a comma list compares")
    p.add_argument("--vocab", type=int, default=32768, help="vocabulary size of the random-init model")
    p.add_argument("--steps", type=int, default=10, help="timed optimiser steps (after two warm-up steps)")
    p.add_argument("--remat", type=_list(str), default=["none"], help="none, dots or full; a comma list compares")
    p.add_argument("--muon-dtype", type=_list(str), default=["auto"])
    p.add_argument("--fsdp", action=argparse.BooleanOptionalAction, default=False,
                   help="shard parameters and optimiser state")
    p.add_argument("--muon-stack", type=_list(lambda s: s.lower() in ("1", "true", "yes")), default=[True])
    p.add_argument("--devices", type=_list(int), default=[None], help="use the first N devices (default: all)")
    p.add_argument("--residual", type=_list(str), default=[None],
                   help="residual stream dtype: auto (= compute dtype), float32, bfloat16 (default: TrainConfig's)")
    p.add_argument("--rope-impl", type=_list(str), default=["auto"],
                   help="the form of q/k RoPE + QK-norm the model is traced with (nanocode/ops.qkv_heads): auto, "
                        "flip, pallas")
    p.add_argument("--check-rope", action="store_true",
                   help="first compare every --rope-impl's q/k/v and dL/dqkv with split_heads + autodiff here")
    p.add_argument("--matmul-dtype", dest="matmul", type=_list(str), default=["auto"],
                   help="the matmuls' input dtype: auto, float32, bfloat16; a comma list compares")
    p.add_argument("--ce-impl", type=_list(str), default=["auto"],
                   help="the cross entropy's passes (training/losses.py): auto, xla, pallas, chunked")
    p.add_argument("--xla-opts", type=lambda s: s.split("|"), default=[""],
                   help="per-variant XLA compiler options 'k=v;k=v', variants separated by |")
    p.add_argument("--repeat", type=int, default=1, help="run the whole table this many times, round-robin")
    p.add_argument("--breakdown", action="store_true", help="also time forward, backward and optimiser alone")
    p.add_argument("--profile", action="store_true", help="print the kernels that take the most time")
    p.add_argument("--dump-hlo", default=None, help="write each compiled step's HLO text into this folder")
    p.add_argument("--jsonl", default=None, help="append each result as a JSON line to this file")
    a = p.parse_args(argv)
    try:
        depths, batches, seqs = ([int(x) for x in v.split(",")] for v in (a.depth, a.batch, a.seq))
    except ValueError:
        p.error("--depth, --batch and --seq take integers, optionally comma-separated (e.g. --depth 12,20)")
    bad = [r for r in a.remat if r not in ("none", "dots", "full")]
    bad_mm = [m for m in a.matmul if m not in ("auto", "float32", "bfloat16")]
    if bad or bad_mm or min(depths + batches + seqs) < 1 or a.steps < 1 or a.repeat < 1:
        p.error(f"--remat takes none, dots or full (got {bad}); --matmul-dtype auto, float32 or bfloat16 (got "
                f"{bad_mm}); --depth/--batch/--seq/--steps/--repeat must be positive")
    bad = [r for r in a.residual if r not in (None, "auto", "float32", "bfloat16")]
    if bad:
        p.error(f"--residual takes auto, float32 or bfloat16 (got {bad})")
    from nanocode.ops import QKV_FORMS
    if any(r not in QKV_FORMS for r in a.rope_impl):
        p.error(f"--rope-impl takes {', '.join(QKV_FORMS)} (got {','.join(a.rope_impl)})")
    from training.losses import CE_IMPLS
    if any(c not in CE_IMPLS for c in a.ce_impl):
        p.error(f"--ce-impl takes {', '.join(CE_IMPLS)} (got {','.join(a.ce_impl)})")
    rows = []
    if a.check_rope:
        for d, b, t in itertools.product(depths, batches, seqs):
            rows += check_rope(d, b, t, a.rope_impl)
    rows += run(depths, batches, seqs, a.vocab, a.steps, a.remat, a.muon_dtype, (a.fsdp,), a.breakdown, a.jsonl,
                muon_stack=a.muon_stack, profile=a.profile, dump_hlo=a.dump_hlo, devices=a.devices,
                residual=a.residual, rope_impl=a.rope_impl, repeat=a.repeat, ce_impl=a.ce_impl,
                xla_opts=a.xla_opts, matmul=a.matmul)
    failed = [r for r in rows if "error" in r]
    if failed:
        print(f"{len(failed)} of {len(rows)} runs failed (their rows above say why)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
