"""JAX setup shared by every entry point: the persistent compilation cache, the dtype policy, paths.

Nothing here imports flax or the UI; importing this module does not initialise a JAX backend.
"""
import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from nanocode.lookup import nanocode_home

_jax_ready = False


def setup_jax() -> None:
    """Turn on the persistent compilation cache (idempotent).

    A depth-12 decode loop takes tens of seconds to compile on GPU and a few on CPU; with the cache the
    second `nanocode chat` in a repository starts without that wait.
    """
    global _jax_ready
    if _jax_ready:
        return
    cache_dir = nanocode_home() / "jax_cache"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        _jax_ready = True  # a read-only home must not stop inference; we only lose the cache
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    # Cache everything that took at least half a second to compile: the sampler's programs do.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _jax_ready = True


def backend() -> str:
    """'cpu', 'gpu' or 'tpu'."""
    return jax.default_backend()


def compute_dtype(platform: str | None = None):
    """Activation/matmul dtype: bf16 where the hardware has fast bf16 matmuls, fp32 on CPU.

    Parameters always stay fp32 (master weights); they are cast to this dtype at each matmul. On CPU,
    XLA's bf16 matmuls are emulated and ~10x slower than fp32 (measured: [1,384]x[384,32768] 1.3 ms
    fp32 vs 19 ms bf16 on a 2-core EPYC), so CPU computes in fp32.
    """
    platform = platform or backend()
    return jnp.float32 if platform == "cpu" else jnp.bfloat16


@functools.cache
def cpu_has_bf16_dot() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX), where XLA's CPU matmuls
    (YNNPACK) run bf16 inputs at ~2x the fp32 rate. Linux only (/proc/cpuinfo); elsewhere False."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def train_matmul_dtype(platform: str | None = None):
    """The dtype of the training matmuls' inputs (accumulation and outputs stay in the compute dtype):
    the compute dtype on accelerators; on CPU bf16 where the CPU has bf16 dot instructions, else fp32.

    On the 2-core CPU (AVX512-BF16), depth 4: ~2.6 s per train step with fp32 matmuls, ~1.9 with bf16 inputs
    and every backward operand laid out row-major (nanocode/cpu_matmul.py; 2026-11-22, training/LOG.md).
    Decoding keeps fp32 (bf16 [1, C] x [C, V] matmuls are ~10x slower there).
    NANOCODE_CPU_MATMUL=float32|bfloat16 overrides the CPU choice."""
    platform = platform or backend()
    if platform != "cpu":
        return compute_dtype(platform)
    forced = os.environ.get("NANOCODE_CPU_MATMUL")
    if forced:
        if forced not in ("float32", "bfloat16"):
            raise ValueError(f"NANOCODE_CPU_MATMUL={forced!r}: use 'float32' or 'bfloat16'")
        return jnp.dtype(forced)
    return jnp.dtype(jnp.bfloat16 if cpu_has_bf16_dot() else jnp.float32)


def attention_impl(platform: str | None = None, dtype=None, seq_len: int | None = None) -> str | None:
    """Which `jax.nn.dot_product_attention` implementation the full-sequence (training) path uses.

    cuDNN flash attention on GPU with bf16/fp16 inputs and a sequence length that is a multiple of 64
    (cuDNN refuses odd lengths in training, e.g. 2047); XLA elsewhere. `NANOCODE_ATTENTION=xla` forces
    XLA (e.g. to rule cuDNN out when debugging a numerical difference).
    """
    forced = os.environ.get("NANOCODE_ATTENTION")
    if forced:
        if forced not in ("xla", "cudnn"):
            raise ValueError(f"NANOCODE_ATTENTION={forced!r}: use 'xla' or 'cudnn'")
        return forced
    platform = platform or backend()
    if platform == "gpu" and dtype in (jnp.bfloat16, jnp.float16) and (seq_len is None or seq_len % 64 == 0):
        return "cudnn"
    return None
