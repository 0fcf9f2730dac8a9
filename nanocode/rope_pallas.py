"""q/k RoPE + QK-norm as Pallas kernels: the "pallas" form of nanocode.ops.qkv_heads (what "auto", the
default, picks on NVIDIA GPUs).

XLA cannot fuse a row reduction with the elementwise pass that needs its result, so its best is a pass
for the norm's sum of squares and one for the output (forward), one for the gradient's mean(dy * y) and
one that writes dL/dqkv (backward). These kernels hold a block of rows of one head in registers and do
each direction in one pass: q and k read once, y written once; dL/dqkv written once. On an H200 at depth
12: 113.8-114.0 ms per train step against 115.9-116.3 with the "flip" form (2026-11-22, `python -m
training.bench_train --rope-impl flip,auto --repeat 2`; training/LOG.md).

Sharded jits (data parallel, FSDP): every row of the kernels' output depends only on the same row of their
inputs, so under a mesh each device runs them on its own rows (nanocode/per_device.py). On CPU they run in
Pallas's interpreter (the tests).

cos, sin: [B*T, H/2] fp32, row r for position pos[r // T, r % T] (ops._flat_cos_sin).
"""
from functools import partial

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from nanocode.per_device import pallas_options, per_device_rows


def _row_block(rows: int) -> int:
    """Rows per kernel program: a power of two (Triton's block shapes) that divides `rows`."""
    r = 64
    while rows % r:
        r //= 2
    return r


def _rope_norm_kernel(x_ref, cos_ref, sin_ref, y_ref, s_ref):
    h2, dt = cos_ref.shape[-1], y_ref.dtype
    cos, sin = cos_ref[...], sin_ref[...]
    x1, x2 = x_ref[:, :h2].astype(jnp.float32), x_ref[:, h2:].astype(jnp.float32)
    z1 = (x1 * cos + x2 * sin).astype(dt).astype(jnp.float32)  # rotary's output, in x's dtype
    z2 = (x2 * cos - x1 * sin).astype(dt).astype(jnp.float32)
    sum_sq = jnp.sum(z1 * z1, axis=-1, keepdims=True) + jnp.sum(z2 * z2, axis=-1, keepdims=True)
    s = jax.lax.rsqrt(sum_sq / (2 * h2) + 1e-6)
    y_ref[:, :h2] = (z1 * s).astype(dt)
    y_ref[:, h2:] = (z2 * s).astype(dt)
    s_ref[...] = s


def rope_norm(qkv_BxTxF, first_head: int, M: int, H: int, cos, sin):
    """rope_qk_norm of heads first_head .. first_head + M - 1 of the fused projection's output, in one
    Pallas kernel that reads them in place: (y [B, T, M, H] in qkv's dtype, s [B, T, M, 1] fp32).
    Each device on its own rows under a mesh (nanocode/per_device.py)."""
    return per_device_rows(partial(_rope_norm, first_head=first_head, M=M, H=H), qkv_BxTxF, cos, sin)


def _rope_norm(qkv_BxTxF, cos, sin, *, first_head: int, M: int, H: int):
    B, T, F = qkv_BxTxF.shape
    R = _row_block(B * T)
    y, s = pl.pallas_call(
        _rope_norm_kernel,
        out_shape=(jax.ShapeDtypeStruct((B * T, M * H), qkv_BxTxF.dtype),
                   jax.ShapeDtypeStruct((B * T, M), jnp.float32)),
        grid=(M, B * T // R),  # the head varies fastest: its programs share the row block's cos/sin in L2
        in_specs=[pl.BlockSpec((R, H), lambda j, i: (i, first_head + j)),
                  pl.BlockSpec((R, H // 2), lambda j, i: (i, 0)), pl.BlockSpec((R, H // 2), lambda j, i: (i, 0))],
        out_specs=[pl.BlockSpec((R, H), lambda j, i: (i, j)), pl.BlockSpec((R, 1), lambda j, i: (i, j))],
        **pallas_options(num_warps=4),
    )(qkv_BxTxF.reshape(B * T, F), cos, sin)
    return y.reshape(B, T, M, H), s.reshape(B, T, M, 1)


def _qkv_grad_kernel(gq_ref, yq_ref, sq_ref, gk_ref, yk_ref, sk_ref, gv_ref, cos_ref, sin_ref, out_ref, *,
                     n_head: int, n_kv_head: int):
    h2, dt = cos_ref.shape[-1], out_ref.dtype
    head = pl.program_id(0)

    def rope_norm_grad(g_ref, y_ref, s_ref):
        # ops._rms_norm_grad then the inverse rotation, on one block of rows of one head.
        cos, sin, s = cos_ref[...], sin_ref[...], s_ref[...]
        g1, g2 = g_ref[:, :h2].astype(jnp.float32), g_ref[:, h2:].astype(jnp.float32)
        y1, y2 = y_ref[:, :h2].astype(jnp.float32), y_ref[:, h2:].astype(jnp.float32)
        mean_gy = (jnp.sum(g1 * y1, axis=-1, keepdims=True) + jnp.sum(g2 * y2, axis=-1, keepdims=True)) / (2 * h2)
        d1, d2 = s * (g1 - y1 * mean_gy), s * (g2 - y2 * mean_gy)
        out_ref[:, :h2] = (d1 * cos - d2 * sin).astype(dt)
        out_ref[:, h2:] = (d2 * cos + d1 * sin).astype(dt)

    pl.when(head < n_head)(lambda: rope_norm_grad(gq_ref, yq_ref, sq_ref))
    pl.when((head >= n_head) & (head < n_head + n_kv_head))(lambda: rope_norm_grad(gk_ref, yk_ref, sk_ref))

    @pl.when(head >= n_head + n_kv_head)
    def _():
        out_ref[...] = gv_ref[...].astype(dt)


def qkv_grad(yq, sq, yk, sk, cos, sin, gq_BxTxNxH, gk_BxTxKxH, gv_BxTxKxH):
    """dL/dqkv [B, T, (N + 2K) H] in one Pallas kernel: one program per block of rows and head of the
    output, each reading only its own head's gradient (and y, s for q and k). Each device on its own rows
    under a mesh (nanocode/per_device.py)."""
    return per_device_rows(_qkv_grad, yq, sq, yk, sk, cos, sin, gq_BxTxNxH, gk_BxTxKxH, gv_BxTxKxH)


def _qkv_grad(yq, sq, yk, sk, cos, sin, gq_BxTxNxH, gk_BxTxKxH, gv_BxTxKxH):
    B, T, N, H = yq.shape
    K = yk.shape[2]
    R, dt = _row_block(B * T), yq.dtype
    q_head = lambda j, i: (i, jnp.minimum(j, N - 1))  # noqa: E731 - clamped: other heads' programs skip it
    k_head = lambda j, i: (i, jnp.clip(j - N, 0, K - 1))  # noqa: E731
    v_head = lambda j, i: (i, jnp.clip(j - N - K, 0, K - 1))  # noqa: E731
    rows = lambda j, i: (i, 0)  # noqa: E731
    out = pl.pallas_call(
        partial(_qkv_grad_kernel, n_head=N, n_kv_head=K),
        out_shape=jax.ShapeDtypeStruct((B * T, (N + 2 * K) * H), dt),
        grid=(N + 2 * K, B * T // R),  # the head varies fastest (see rope_norm)
        in_specs=[pl.BlockSpec((R, H), q_head), pl.BlockSpec((R, H), q_head), pl.BlockSpec((R, 1), q_head),
                  pl.BlockSpec((R, H), k_head), pl.BlockSpec((R, H), k_head), pl.BlockSpec((R, 1), k_head),
                  pl.BlockSpec((R, H), v_head), pl.BlockSpec((R, H // 2), rows), pl.BlockSpec((R, H // 2), rows)],
        out_specs=pl.BlockSpec((R, H), lambda j, i: (i, j)),
        **pallas_options(num_warps=4),
    )(gq_BxTxNxH.astype(dt).reshape(B * T, N * H), yq.reshape(B * T, N * H), sq.reshape(B * T, N),
      gk_BxTxKxH.astype(dt).reshape(B * T, K * H), yk.reshape(B * T, K * H), sk.reshape(B * T, K),
      gv_BxTxKxH.astype(dt).reshape(B * T, K * H), cos, sin)
    return out.reshape(B, T, -1)
