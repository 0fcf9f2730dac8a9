"""`nanocode bench train`: training throughput on random tokens, through the real train step.

    python -m training.bench_train --depth 12 --batch 32 --seq 2048
    python -m training.bench_train --depth 12 --remat none,dots --muon-dtype float32,bfloat16   # a table
    python -m training.bench_train --residual float32,bfloat16 --repeat 2          # round-robin, twice
    python -m training.bench_train --rope-impl split,flip,pallas --check-rope --repeat 2
    python -m training.bench_train --profile --dump-hlo DIR

Reports tokens/s, model TFLOP/s with nanochat's accounting (6 x matmul parameters + 12 x layers x
heads x head_dim x T per token, forward + backward; the embedding lookup is not a matmul), MFU against
the card's dense bf16 peak (on CPU: against a measured fp32 matmul), and memory. `--batch` is per device:
with several devices the mesh runs data parallel (or FSDP) and the tokens/s are the global figure.
`--breakdown` also times the forward pass, forward + backward and the optimiser update alone; `--profile`
prints where the accelerator's time goes (from a jax.profiler trace).

What each change bought, one H200, depth 12, B=32, T=2048, vocab 32768 (ms per optimiser step; nanochat's
torch.compile trainer: 124.5 ms = 526,545 tok/s = 467 model TFLOP/s; a bf16 8192^3 matmul runs at 882 TFLOP/s there):
    first version (optax Muon per matrix, autodiff through model.logits + optax CE, remat dots)  186
    no rematerialisation (dots -6%, full -13% slower; memory 39 GB at B=32 is no problem)       175
    head matmul backward in bf16 (custom VJP; JAX's transpose ran fp32 x bf16 as fp32 GEMMs)    154
    Muon on same-shaped matrices stacked (3 batched Newton-Schulz chains instead of 72)         146
    Muon really in bf16 (an fp32 momentum hyperparameter promoted NS to TF32 GEMMs) and a
    hand-written soft-capped cross entropy (optax's + tanh wrote [N, V] logits ~8 times)         131
    fused head + cross entropy, dL/dlogits written in bf16 during the forward pass               128
    = 509k tok/s, 452 model TFLOP/s (depth 20, B=16: 230 ms, 142.6k tok/s, 462 TFLOP/s)
    bf16 residual stream (TrainConfig.residual_dtype=auto) and a hand-written q/k/v-split backward
    (model.qkv_heads): -4% per step against the line above's code on the same machine, variants
    round-robin in one process (--repeat 2), on a slower H200 than the 128 ms one:
        residual  norm_vjp  qkv_vjp   ms/step (2 rounds)
        float32   False     False     135.4  135.4     (the line above)
        float32   False     True      134.9  134.1
        bfloat16  False     False     130.5  131.4
        bfloat16  False     True      130.3  129.9
        bfloat16  True      True      130.2  129.8     (the default now: 448 TFLOP/s; own process: 128.1)
    depth 20, B=16: 241.6 -> 234.3 ms. The loss after 12 steps on one random batch: 0.9048 -> 0.9050.
    q/k RoPE + QK-norm in the flip form and dL/dqkv written once (model.qkv_heads, rope_impl="flip",
    the default now), round-robin in one process against "split" (the line above's code),
    `--rope-impl split,flip,pallas --steps 10 --repeat 2`: split 127.9 / 127.9 ms, flip 124.8 / 124.3
    (-2.6%, 466-468 TFLOP/s), pallas 121.5 / 121.9 (478 TFLOP/s).
    From the two profiles, kernels per step of q/k RoPE + QK-norm + the v copy: 13.5 ms -> 7.8:
        forward per layer 0.40 -> 0.30 ms: one sum-of-squares reduction for q and k together (0.11) and
          one normalize pass that reads q and k from the projection's output and writes both (0.13);
          the v copy for cuDNN (0.06) stays
        backward per layer 0.72 -> 0.35 ms: two mean(dy*y) reductions (2 x 0.06) and one fusion that
          writes dL/dqkv (0.23): the optimization barrier keeps XLA's GEMM fusion from taking a second
          copy of the concatenate into the dW matmul, and dq, dk are no longer materialised
    The loss after 12 steps: 0.9050 (unchanged); memory 33.8 -> 31.5 GB (the rotated halves are no
    longer kept for the backward). rope_impl="pallas" (one Triton kernel each way, Pallas): 121.1 ms
    = 480 TFLOP/s in a profiling run (121.5-121.9 round-robin, above):
    5.2 ms of those kernels per step, forward 2 x 0.086 ms per layer (at ~2.3 TB/s: room left),
    backward 0.20 ms per layer (~4 TB/s); same loss 0.9050. The default now ("auto" on NVIDIA GPUs): under
    a sharded jit each device runs the kernels on its own rows (nanocode/per_device.py).
The cross entropy's two passes and the default kernels (H200s differ by up to ~3% between machines, so
each comparison below is round-robin in one process on one machine):
    the head matmul as a plain cuBLAS GEMM writing bf16 logits (an optimization barrier: XLA had fused
    the soft cap's tanh into a Triton GEMM, 8.2 ms against cuBLAS's 4.1), rope pallas: 119.0 -> 115.5 ms
    Muon's ns_steps static (optax's Newton-Schulz loop unrolls; as an injected hyperparameter it was a
    while loop copying its condition to the host 18 times a step): in-trace idle 2.9 -> 1.0 ms per step
    the passes as Pallas kernels with the hardware tanh (training/ce_pallas.py): 115.2 -> 112.0-113.0
    pallas kernels as the default (rope_impl and ce_impl "auto"), `--rope-impl flip,auto --ce-impl
    xla,auto --repeat 2` on one machine: flip/xla 119.8 / 120.0 ms (485 TFLOP/s), auto/xla 117.1 / 117.0,
    flip/auto 115.9 / 116.3, auto/auto 114.0 / 113.8 (510-511); with the blocks tuned, 113.2-113.4 (513),
    and 112.0-113.0 (515-519) on the faster machine. Depth 20, B=16: 216.8 ms, 151.1k tok/s, 490 TFLOP/s.
    XLA options round-robin (Triton GEMMs for any dot, Triton GEMMs off, cuBLASLt): all within +-0.5 ms.
    A profile's kernels add up to ~5 ms less than the timed step (112.0 ms of kernels first to last in
    a trace of 3 steps, 116.0 timed over 30, same program, no idle gaps in the trace): probably the
    clock under the power limit in sustained runs (not measured; the timed figure is the one reported).
Tried and dropped (no gain): bf16 logits (129.1 vs 129.7) while XLA still fused tanh into the GEMM, an
optimisation barrier to stop XLA sharing tanh between the two cross-entropy passes, XLA's Triton GEMMs off,
CUDA command buffers off, B=64; the hand-written RMSNorm backward (model.norm_to) is neutral (+-0.5 ms)
and stays for its equal loss.
Where the 124.6 ms go (profile, rope_impl flip): 117.9 ms of kernels: matmuls 64.4, cuDNN flash
attention 22.0, elementwise 20.7, reductions 8.8, copies 1.9; among the fusions cross entropy ~7.4 (not
touched), ReLU^2 6.3 (forward + backward at the memory bandwidth: only a GEMM epilogue would remove it)
and q/k RoPE + QK-norm + v copy 7.8 (0.65 ms per layer, see above). With split: 13.5 ms by the same
count (14.3 as counted before), ~1.1 ms per layer: forward, a multi-output fusion wrote the rotated
halves (0.10), one concatenate each for q and k (2 x 0.05), a reduction each (2 x 0.08) and a normalize
each (2 x 0.06); backward, dq and dk were materialised (0.27), two reductions (0.15) and dL/dqkv was
concatenated twice (2 x 0.14).
Two H200s, data parallel (before flip): 936k tok/s, 96.6% of twice one GPU. With the Pallas kernels per
device (nvidia-h200-x2, `--devices 1,2 --repeat 2`): one GPU 110.5 / 110.8 ms (524.8-526.2 TFLOP/s on that
host), two 1,135,646 / 1,141,863 tok/s = 95.7-96.5% of twice one; FSDP on two: 1,131,300 tok/s.

The 2-core CPU (AMD EPYC with AVX512-BF16, 2 MB L2 + 32 MB L3, ~7 GB/s measured copy bandwidth), depth 4,
T=512, B=8, vocab 32768 (nanochat's trainer, fp32 eager: 1,301 tok/s = 3.15 s per step); ms per step:
    fp32 matmuls (last stop's code; it measured 2,484-2,543 then)                             2,520-2,750
    bf16 matmul inputs, fp32 accumulation, in autodiff's layouts: XLA's CPU bf16 dots (YNNPACK) are
    row-major x row-major only, so it ran every transposed backward matmul as fp32                 2,204
    cpu_matmul.mixed_matmul: the backward's operands copied row-major (head: d @ w.T 570 -> 190 ms)   1,825-1,918
    attention with bf16 matmuls and row-major backward operands (cpu_matmul.causal_attention;
    XLA's fp32 attention fwd + bwd 63 -> 39 ms per layer)                                    1,634-1,764
    head + cross entropy in 512-row chunks (training/losses.py "chunked")                      1,604-1,771
    RoPE cos/sin materialised (XLA's CPU fusions evaluated them per element of q and k)         1,537-1,589
    = 2,577-2,664 tok/s, 1.98-2.05x nanochat; on a busier hour of the same VM 1,621-1,684 ms
    (2,432-2,527 tok/s, 1.87-1.94x) while the fp32 path ran 2,676-2,752 in the same rounds (1.64x).
  Where a 1.67 s step went before the cos/sin tables (jax.profiler on CPU, op time summed over both
  threads, 2.0 s): the head's three matmuls ~590 ms (forward 181 over its 8 chunks, dL/dh 194, dL/dw
  213), zero-filling and writing the chunks' bf16 dL/dlogits 150 (lax.map's stacked output), the cross
  entropy's passes ~130, block matmuls ~360, attention ~200, Muon's Newton-Schulz ~170 (fp32: optax's
  X X^T is a transposed matmul, so bf16 would not help), RoPE's fusions ~95, the rest elementwise.
  At vocab 8192 (the cpu preset's): 887-931 ms per step, 4,400-4,617 tok/s (fp32 path 1,448, 2,829).
  Tried: all compute in bf16 (XLA converts bf16 elementwise work and bf16-output dots back to fp32: no
  gain); XLA's YNNPACK off (slower); a fori_loop over uninitialised buffers instead of lax.map for the
  chunks (1,203 ms for the head against 877); unrolled chunks (977); Muon in bf16 (no gain).
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
              norm_vjp: bool = True, qkv_vjp: bool = True, rope_impl: str = "auto", ce_impl: str = "auto",
              xla_opts: str = "", matmul: str | None = None) -> dict:
    """One configuration: compile, warm up, time `steps` optimiser steps (one micro-batch each).
    residual: TrainConfig.residual_dtype (None: its default). rope_impl: GPT(rope_impl=...)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

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

    graphdef = nnx.split(nnx.eval_shape(lambda: GPT(model_cfg, rngs=nnx.Rngs(0), norm_vjp=norm_vjp, qkv_vjp=qkv_vjp,
                                                    rope_impl=rope_impl, residual_dtype=cfg.residual_jnp_dtype(),
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

    tag = f"d{depth}_b{batch}_t{seq}_{remat}_{cfg.residual_dtype}_{norm_vjp}_{qkv_vjp}_{rope_impl}_{ce_impl}"  # dump file names
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
               muon_stack=muon_stack, fsdp=fsdp, residual=cfg.residual_dtype, norm_vjp=norm_vjp,
               qkv_vjp=qkv_vjp, rope_impl=rope_impl, ce_impl=ce_impl, matmul=cfg.matmul_jnp_dtype().name, xla_opts=xla_opts, step_ms=round(dt * 1e3, 2), tok_s=round(tok_s),
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
    """Each rope_impl's q, k, v and dL/dqkv (model.qkv_heads) against split_heads and JAX's autodiff, at
    this depth's head shapes in the compute dtype, on random data: the largest difference relative to
    the reference's largest value, per output. A check of the kernels on this machine's backend (the
    CPU tests check the same in fp32)."""
    from functools import partial

    import jax
    import jax.numpy as jnp

    from nanocode import runtime
    from nanocode.model import ModelConfig, qkv_heads, split_heads
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
            got = jax.jit(partial(outputs, lambda x, p, impl=impl: qkv_heads(x, p, N, K, H, base, impl)))(qkv, pos, cts)
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
    cols = ["depth", "batch", "seq", "devices", "remat", "muon_dtype", "muon_stack", "fsdp", "residual", "norm_vjp",
            "qkv_vjp", "rope_impl", "ce_impl", "matmul", "xla_opts", "step_ms", "tok_s", "tflops",
            "mfu", "compile_s", "static_mem_gb", "peak_mem_gb", "fwd_ms", "fwd_bwd_ms", "optim_ms"]
    cols = [c for c in cols if any(c in r for r in rows)]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).rjust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def run(depth=(12,), batch=(32,), seq=(2048,), vocab=32768, steps=10, remat=("none",), muon_dtype=("auto",),
        fsdp=(False,), breakdown=False, jsonl=None, echo=print, muon_stack=(True,), profile=False, dump_hlo=None,
        devices=(None,), residual=(None,), norm_vjp=(True,), qkv_vjp=(True,), rope_impl=("auto",),
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
                muon_stack=muon_stack, residual=residual, norm_vjp=norm_vjp, qkv_vjp=qkv_vjp, rope_impl=rope_impl,
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=_list(int), default=[12])
    p.add_argument("--batch", type=_list(int), default=[32], help="sequences per device")
    p.add_argument("--seq", type=_list(int), default=[2048])
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--remat", type=_list(str), default=["none"])
    p.add_argument("--muon-dtype", type=_list(str), default=["auto"])
    p.add_argument("--fsdp", type=_list(lambda s: s.lower() in ("1", "true", "yes")), default=[False])
    p.add_argument("--muon-stack", type=_list(lambda s: s.lower() in ("1", "true", "yes")), default=[True])
    p.add_argument("--devices", type=_list(int), default=[None], help="use the first N devices (default: all)")
    p.add_argument("--residual", type=_list(str), default=[None],
                   help="residual stream dtype: auto (= compute dtype), float32, bfloat16 (default: TrainConfig's)")
    p.add_argument("--norm-vjp", type=_list(lambda s: s.lower() in ("1", "true", "yes")), default=[True],
                   help="hand-written RMSNorm backward (false: JAX autodiff)")
    p.add_argument("--qkv-vjp", type=_list(lambda s: s.lower() in ("1", "true", "yes")), default=[True],
                   help="hand-written backward of the q/k/v split + RoPE + QK-norm (false: JAX autodiff)")
    p.add_argument("--rope-impl", type=_list(str), default=["auto"],
                   help="how the training forward computes q/k RoPE + QK-norm (model.qkv_heads): auto, split, flip, pallas")
    p.add_argument("--check-rope", action="store_true",
                   help="first compare every --rope-impl's q/k/v and dL/dqkv with split_heads + autodiff here")
    p.add_argument("--matmul-dtype", dest="matmul", type=_list(str), default=[None],
                   help="the matmuls' input dtype: auto, float32, bfloat16 (default: TrainConfig's)")
    p.add_argument("--ce-impl", type=_list(str), default=["auto"],
                   help="the cross entropy's passes (training/losses.py): auto, xla, pallas")
    p.add_argument("--xla-opts", type=lambda s: s.split("|"), default=[""],
                   help="per-variant XLA compiler options 'k=v;k=v', variants separated by |")
    p.add_argument("--repeat", type=int, default=1, help="run the whole table this many times, round-robin")
    p.add_argument("--breakdown", action="store_true")
    p.add_argument("--profile", action="store_true", help="print the kernels that take the most time")
    p.add_argument("--dump-hlo", default=None, help="write each compiled step's HLO text into this folder")
    p.add_argument("--jsonl", default=None, help="append each result as a JSON line to this file")
    a = p.parse_args(argv)
    bad = [r for r in a.residual if r not in (None, "auto", "float32", "bfloat16")]
    if bad or a.repeat < 1:
        p.error(f"--residual takes auto, float32 or bfloat16 (got {bad}); --repeat must be >= 1")
    from nanocode.model import ROPE_IMPLS
    if any(r not in ROPE_IMPLS for r in a.rope_impl):
        p.error(f"--rope-impl takes {', '.join(ROPE_IMPLS)} (got {','.join(a.rope_impl)})")
    from training.losses import CE_IMPLS
    if any(c not in CE_IMPLS for c in a.ce_impl):
        p.error(f"--ce-impl takes {', '.join(CE_IMPLS)} (got {','.join(a.ce_impl)})")
    if a.check_rope:
        for d, b, t in itertools.product(a.depth, a.batch, a.seq):
            check_rope(d, b, t, a.rope_impl)
    rows = run(a.depth, a.batch, a.seq, a.vocab, a.steps, a.remat, a.muon_dtype, a.fsdp, a.breakdown, a.jsonl,
               muon_stack=a.muon_stack, profile=a.profile, dump_hlo=a.dump_hlo, devices=a.devices,
               residual=a.residual, norm_vjp=a.norm_vjp, qkv_vjp=a.qkv_vjp, rope_impl=a.rope_impl,
               repeat=a.repeat, ce_impl=a.ce_impl, xla_opts=a.xla_opts, matmul=a.matmul)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
