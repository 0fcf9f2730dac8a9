"""JAX setup shared by every entry point: the persistent compilation cache, the dtype policy, paths.

Nothing here imports flax or the UI; importing this module does not initialise a JAX backend.
"""
import os

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


def decode_weights_out_in(platform: str | None = None) -> bool:
    """Whether the sampler keeps its weights transposed, [out, in] (see model.dense): yes on GPU, where
    batch-1 matmuls become reductions that want the contiguous axis; no on CPU, where XLA's own matmul
    is faster with [in, out] (2-core EPYC, depth 6: 1.6 vs 1.9 ms for the block matmuls, and 1.5 vs
    2.1 ms for a vocab-32768 head). NANOCODE_DECODE_LAYOUT=in_out|out_in overrides (to measure)."""
    forced = os.environ.get("NANOCODE_DECODE_LAYOUT")
    if forced:
        if forced not in ("in_out", "out_in"):
            raise ValueError(f"NANOCODE_DECODE_LAYOUT={forced!r}: use 'in_out' or 'out_in'")
        return forced == "out_in"
    return (platform or backend()) == "gpu"


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
