"""`nanocode bench sample`: how fast the sampler turns a prompt into tokens.

Reports the median over repeats of: time to first token (prefill, on host), prefill tok/s, decode tok/s
in one device call (`generate`) and in streamed chunks (`stream`, what the UI sees), and on GPU the
bandwidth a decode step achieves (bf16 weights + the KV-cache slots it reads) as a fraction of the card's.

    python -m nanocode.bench_sample --depth 12 --vocab 32768 --batch 1 --prompt-len 128 --new-tokens 256
Imports no UI library (runs on the GPU machines as `PYTHONPATH=. python3 -m nanocode.bench_sample`).
"""
import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

from nanocode import runtime


def flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanocode bench sample", description="Sampling speed: time to first token, "
                                "prefill and decode tok/s, bandwidth on GPU.")
    p.add_argument("--model", help="A model directory (default: a random-init model).")
    p.add_argument("--depth", type=int, default=12, help="Depth of the random-init model when no --model is given.")
    p.add_argument("--vocab", type=int, default=32768, help="Vocab size of the random-init model.")
    p.add_argument("--seq-len", type=int, default=2048, help="Context length of the random-init model.")
    p.add_argument("--batch", type=int, default=1, help="Prompts decoded together.")
    p.add_argument("--prompt-len", type=int, default=128, help="Prompt tokens.")
    p.add_argument("--new-tokens", type=int, default=256, help="Tokens generated per prompt.")
    p.add_argument("--repeats", type=int, default=5, help="Timed runs (the median is reported).")
    p.add_argument("--unroll", default="1", help="Decode steps per loop iteration; a comma list compares.")
    p.add_argument("--chunk", type=int, default=16, help="Tokens per device call when streaming.")
    p.add_argument("--json", action="store_true", help="One JSON object per line instead of a table.")
    return p

# Datasheet memory bandwidth, bytes/s, by jax device_kind prefix (for the achieved-bandwidth fraction).
PEAK_BANDWIDTH = {"NVIDIA H200": 4.8e12, "NVIDIA H100": 3.35e12, "NVIDIA A100": 2.0e12, "NVIDIA GH200": 4.0e12}


def peak_bandwidth() -> float | None:
    kind = jax.devices()[0].device_kind
    for prefix, bw in PEAK_BANDWIDTH.items():
        if kind.startswith(prefix):
            return bw
    return None


def decode_step_bytes(sampler, batch: int, cache_len: int) -> int:
    """Bytes one decode step must read: every weight matrix once (the embedding only B rows) and, per
    row, the whole cache of cache_len slots (attention reads all of it, masked)."""
    cfg = sampler.config
    itemsize = np.dtype(sampler.dtype).itemsize
    weights = sum(p.size for p in jax.tree.leaves(sampler.params)) - cfg.padded_vocab * cfg.width
    kv = 2 * cfg.depth * cfg.n_kv_head * cfg.head_dim_ * cache_len * batch
    return (weights + batch * cfg.width + kv) * itemsize


def bench(sampler, *, batch: int, prompt_len: int, new_tokens: int, repeats: int, chunk: int = 16,
          seed: int = 0) -> dict:
    cfg = sampler.config
    if prompt_len + new_tokens > cfg.seq_len:
        raise ValueError(f"prompt {prompt_len} + new tokens {new_tokens} exceed the context {cfg.seq_len}")
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, cfg.vocab_size, prompt_len).tolist() for _ in range(batch)]

    def one_run(streamed: bool):
        sampler.reset()  # no prefix reuse: every run prefills the whole prompt
        t0 = time.perf_counter()
        n, first, cpu_first = 0, None, None
        for rows in sampler._run(prompts, new_tokens, 0.0, None, None, (), seed, chunk=chunk if streamed else None):
            n += sum(len(r) for r in rows)
            if first is None:
                first, cpu_first = time.perf_counter(), time.process_time()
        end, cpu_end = time.perf_counter(), time.process_time()
        # decode time covers the tokens after the first; CPU time says how loaded a shared machine was
        return first - t0, end - first, n - batch, cpu_end - cpu_first

    t0 = time.perf_counter()
    one_run(False), one_run(True)  # compile (or load from the persistent cache)
    warmup_s = time.perf_counter() - t0
    runs = [one_run(False) for _ in range(repeats)]
    streamed = [one_run(True) for _ in range(repeats)]
    ttft = statistics.median(r[0] for r in runs)
    decode_tok_s = statistics.median(r[2] / r[1] for r in runs)
    stream_tok_s = statistics.median(r[2] / r[1] for r in streamed)
    result = {
        "backend": runtime.backend(), "device": jax.devices()[0].device_kind, "depth": cfg.depth,
        "width": cfg.width, "vocab": cfg.vocab_size, "batch": batch, "prompt_len": prompt_len,
        "new_tokens": new_tokens, "repeats": repeats, "unroll": sampler.unroll, "chunk": chunk,
        "params_M": round(cfg.num_params() / 1e6, 1), "warmup_s": round(warmup_s, 2),
        "ttft_ms": round(ttft * 1e3, 2), "prefill_tok_s": round(batch * prompt_len / ttft, 1),
        "decode_tok_s": round(decode_tok_s, 1), "stream_tok_s": round(stream_tok_s, 1),
        "decode_step_ms": round(batch / decode_tok_s * 1e3, 3),
        # process CPU seconds per decode step: on a shared CPU, wall time / this shows the contention
        "decode_cpu_ms": round(statistics.median(r[3] / r[2] for r in runs) * batch * 1e3, 3),
        "load_avg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    cache_len = sampler.cache_len(prompt_len, new_tokens)
    step_bytes = decode_step_bytes(sampler, batch, cache_len)
    result["step_MB"] = round(step_bytes / 1e6, 1)
    result["achieved_GBps"] = round(step_bytes * decode_tok_s / batch / 1e9, 1)
    peak = peak_bandwidth()
    if peak is not None and result["backend"] == "gpu":
        result["bandwidth_fraction"] = round(step_bytes * decode_tok_s / batch / peak, 3)
        result["roofline_tok_s"] = round(peak / step_bytes * batch, 0)
    return result


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="nanocode bench sample (medians)")
    columns = [("device", "device"), ("depth", "depth"), ("vocab", "vocab"), ("batch", "B"),
               ("prompt_len", "prompt"), ("new_tokens", "new"), ("unroll", "unroll"), ("ttft_ms", "TTFT ms"),
               ("prefill_tok_s", "prefill tok/s"), ("decode_tok_s", "decode tok/s"),
               ("stream_tok_s", "stream tok/s"), ("decode_step_ms", "step ms"), ("achieved_GBps", "GB/s"),
               ("bandwidth_fraction", "of peak BW"), ("warmup_s", "compile s")]
    columns = [(k, h) for k, h in columns if any(k in r for r in results)]
    for _, header in columns:
        table.add_column(header, justify="right")
    for r in results:
        table.add_row(*[str(r.get(k, "")) for k, _ in columns])
    console = Console()
    if not console.is_terminal:  # a log or pipe: do not squeeze the table into 80 columns
        console = Console(width=220)
    console.print(table)


def make_sampler(model_dir: str | None, depth: int | None, vocab: int, seq_len: int, unroll: int):
    from flax import nnx
    from nanocode.model import GPT, ModelConfig
    from nanocode.sampler import Sampler
    runtime.setup_jax()
    if model_dir:
        from nanocode.checkpoint import load_model
        model, _, _ = load_model(model_dir)
    else:
        model = GPT(ModelConfig(depth=depth or 12, vocab_size=vocab, seq_len=seq_len), rngs=nnx.Rngs(0))
    return Sampler(model, unroll=unroll)


def run(model_dir=None, depth=None, vocab=32768, seq_len=2048, batch=1, prompt_len=128, new_tokens=256,
        repeats=5, unroll=(1,), chunk=16, as_json=False) -> list[dict]:
    results = []
    for u in unroll:
        sampler = make_sampler(model_dir, depth, vocab, seq_len, u)
        results.append(bench(sampler, batch=batch, prompt_len=prompt_len, new_tokens=new_tokens,
                             repeats=repeats, chunk=chunk))
        if as_json:
            print(json.dumps(results[-1]), flush=True)
    if not as_json:
        print_table(results)
    return results


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        unrolls = tuple(int(u) for u in a.unroll.split(","))
    except ValueError:
        return _fail(f"--unroll {a.unroll!r}: give integers separated by commas, e.g. 1,4")
    if a.model is None and a.depth < 1:
        return _fail(f"--depth {a.depth}: give a positive depth")
    from nanocode.checkpoint import CheckpointError
    try:
        run(a.model, a.depth, a.vocab, a.seq_len, a.batch, a.prompt_len, a.new_tokens, a.repeats, unrolls, a.chunk,
            a.json)
    except (CheckpointError, ValueError) as e:  # a bad model directory or sizes: say what, without a traceback
        return _fail(e)
    return 0


def _fail(message) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
