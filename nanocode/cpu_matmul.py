"""bf16 training matmuls on CPU: the mixed-precision path of ops.matmul and ops.attention.

On CPUs with bf16 dot instructions (runtime.train_matmul_dtype) XLA's matmuls (YNNPACK) run bf16 inputs at
~2x the fp32 rate, but only with row-major x row-major operands: with a transposed operand XLA silently
runs the matmul as fp32 (2-core EPYC, [4096, 32768] x [32768, 256]: 570 ms as d @ w.T, 190 ms with w.T
laid out row-major, 2026-11-22). Autodiff gives every backward matmul a transposed operand, so the backward
passes here are written by hand with their operands copied row-major (`row_major`). Inputs are rounded to
bf16; accumulation, scores and softmax stay fp32. Measurements: training/LOG.md.
"""
import math
from functools import partial

import jax
import jax.numpy as jnp

from nanocode import runtime


def row_major(x):
    """x with its logical layout made physical, for a bf16 matmul on one CPU device (elsewhere x itself):
    flattening fixes the element order, so row_major(w.T) is a row-major copy of w's transpose where XLA
    would keep a transposed view; the barrier stops XLA folding the reshape pair away. Not on several
    devices: flattening an array split over them would gather it."""
    if runtime.backend() != "cpu" or x.dtype != jnp.bfloat16 or jax.device_count() > 1:
        return x
    return jax.lax.optimization_barrier(x.reshape(-1)).reshape(x.shape)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def mixed_matmul(x_xI, w_IxO, dtype):
    """x @ w with both inputs rounded to `dtype` (bf16), accumulated and returned in x's dtype (fp32), and a
    backward whose two matmuls also take `dtype` inputs, laid out row-major."""
    return jnp.matmul(x_xI.astype(dtype), w_IxO.astype(dtype), preferred_element_type=x_xI.dtype)


def _mixed_matmul_fwd(x_xI, w_IxO, dtype):
    # x kept in `dtype` (half the memory); w as given (a parameter: no copy); the output, and so the
    # incoming gradient, has x's dtype
    return mixed_matmul(x_xI, w_IxO, dtype), (x_xI.astype(dtype), w_IxO)


def _mixed_matmul_bwd(dtype, saved, g_xO):
    x_xI, w_IxO = saved
    g_NxO = g_xO.reshape(-1, g_xO.shape[-1]).astype(dtype)
    dx_NxI = jnp.matmul(g_NxO, row_major(w_IxO.astype(dtype).T), preferred_element_type=jnp.float32)
    dw_IxO = jnp.matmul(row_major(x_xI.reshape(-1, x_xI.shape[-1]).T), g_NxO, preferred_element_type=jnp.float32)
    return dx_NxI.reshape(x_xI.shape).astype(g_xO.dtype), dw_IxO.astype(w_IxO.dtype)


mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def _heads_first(x_BxTxNxH, dtype):
    return row_major(jnp.swapaxes(x_BxTxNxH, 1, 2).astype(dtype))  # [B, N, T, H]


def _swap_last(x):
    return row_major(jnp.swapaxes(x, -1, -2))


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def causal_attention(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, dtype):
    """softmax(q k^T / sqrt(H) + causal mask) v, [B, T, N, H] in q's dtype (fp32); the matmuls take `dtype`
    (bf16) inputs. k and v have as many heads as q (repeat GQA heads before). XLA's own CPU attention
    (jax.nn.dot_product_attention) runs in fp32: 63 ms forward + backward per layer against 39 here (depth
    4: B=8, T=512, 2 heads of 128; 2026-11-22)."""
    return _attention_fwd(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, dtype)[0]


def _attention_fwd(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, dtype):
    T, H = q_BxTxNxH.shape[1], q_BxTxNxH.shape[-1]
    q, k, v = (_heads_first(x, dtype) for x in (q_BxTxNxH, k_BxTxNxH, v_BxTxNxH))
    s_BxNxTxT = jnp.matmul(q, _swap_last(k), preferred_element_type=jnp.float32) * (1.0 / math.sqrt(H))
    causal_TxT = jnp.tril(jnp.ones((T, T), bool))
    p_BxNxTxT = jax.nn.softmax(jnp.where(causal_TxT, s_BxNxTxT, -jnp.inf), axis=-1)
    o_BxNxTxH = jnp.matmul(p_BxNxTxT.astype(dtype), v, preferred_element_type=jnp.float32)
    out = jnp.swapaxes(o_BxNxTxH, 1, 2).astype(q_BxTxNxH.dtype)
    return out, (q, k, v, p_BxNxTxT)


def _attention_bwd(dtype, saved, g_BxTxNxH):
    q, k, v, p = saved
    H = q.shape[-1]
    g = _heads_first(g_BxTxNxH, dtype)
    dv = jnp.matmul(_swap_last(p.astype(dtype)), g, preferred_element_type=jnp.float32)
    dp = jnp.matmul(g, _swap_last(v), preferred_element_type=jnp.float32)
    # softmax backward: dS = P * (dP - rowsum(P * dP)); masked entries have P = 0
    ds = (p * (dp - jnp.sum(p * dp, axis=-1, keepdims=True)) * (1.0 / math.sqrt(H))).astype(dtype)
    dq = jnp.matmul(ds, k, preferred_element_type=jnp.float32)
    dk = jnp.matmul(_swap_last(ds), q, preferred_element_type=jnp.float32)
    return tuple(jnp.swapaxes(x, 1, 2).astype(g_BxTxNxH.dtype) for x in (dq, dk, dv))


causal_attention.defvjp(_attention_fwd, _attention_bwd)
