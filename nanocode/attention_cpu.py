"""Causal self-attention for training on CPU with bf16 matmuls (the mixed-precision path of model.dense).

XLA's CPU attention (jax.nn.dot_product_attention, implementation=None) runs in fp32, and autodiff gives
its backward matmuls transposed operands, which XLA's fast bf16 dots (YNNPACK) do not take. Here the four
backward matmuls get row-major operands (row_major: a physical copy of a transposed array), the scores
and softmax stay fp32, and only the matmul inputs are rounded to bf16 (fp32 accumulation).
2-core EPYC (AVX512-BF16), depth 4 (B=8, T=512, 2 heads of 128): see training/bench_train.py.
"""
import math
from functools import partial

import jax
import jax.numpy as jnp


def row_major(x):
    """x with its logical layout made physical (a copy when XLA would keep a transposed view): flattening
    fixes the element order; the barrier stops XLA folding the reshape pair away. Not on several devices:
    flattening an array split over them would gather it."""
    if jax.device_count() > 1:
        return x
    return jax.lax.optimization_barrier(x.reshape(-1)).reshape(x.shape)


def _heads_first(x_BxTxNxH, dtype):
    return row_major(jnp.swapaxes(x_BxTxNxH, 1, 2).astype(dtype))  # [B, N, T, H]


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def causal_attention(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, dtype):
    """softmax(q k^T / sqrt(H) + causal mask) v, [B, T, N, H] in q's dtype (fp32); the matmuls take `dtype`
    (bf16) inputs. k and v have as many heads as q (repeat GQA heads before)."""
    return _fwd(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, dtype)[0]


def _fwd(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, dtype):
    T, H = q_BxTxNxH.shape[1], q_BxTxNxH.shape[-1]
    q, k, v = (_heads_first(x, dtype) for x in (q_BxTxNxH, k_BxTxNxH, v_BxTxNxH))
    kT_BxNxHxT = row_major(jnp.swapaxes(k, -1, -2))
    s_BxNxTxT = jnp.matmul(q, kT_BxNxHxT, preferred_element_type=jnp.float32) * (1.0 / math.sqrt(H))
    causal_TxT = jnp.tril(jnp.ones((T, T), bool))
    p_BxNxTxT = jax.nn.softmax(jnp.where(causal_TxT, s_BxNxTxT, -jnp.inf), axis=-1)
    o_BxNxTxH = jnp.matmul(p_BxNxTxT.astype(dtype), v, preferred_element_type=jnp.float32)
    out = jnp.swapaxes(o_BxNxTxH, 1, 2).astype(q_BxTxNxH.dtype)
    return out, (q, k, v, p_BxNxTxT)


def _bwd(dtype, saved, g_BxTxNxH):
    q, k, v, p = saved
    H = q.shape[-1]
    g = _heads_first(g_BxTxNxH, dtype)
    pb = p.astype(dtype)
    dv = jnp.matmul(row_major(jnp.swapaxes(pb, -1, -2)), g, preferred_element_type=jnp.float32)
    dp = jnp.matmul(g, row_major(jnp.swapaxes(v, -1, -2)), preferred_element_type=jnp.float32)
    # softmax backward: dS = P * (dP - rowsum(P * dP)); masked entries have P = 0
    ds = (p * (dp - jnp.sum(p * dp, axis=-1, keepdims=True)) * (1.0 / math.sqrt(H))).astype(dtype)
    dq = jnp.matmul(ds, k, preferred_element_type=jnp.float32)
    dk = jnp.matmul(row_major(jnp.swapaxes(ds, -1, -2)), q, preferred_element_type=jnp.float32)
    out_dtype = g_BxTxNxH.dtype
    return tuple(jnp.swapaxes(x, 1, 2).astype(out_dtype) for x in (dq, dk, dv))


causal_attention.defvjp(_fwd, _bwd)
