"""The fast ops of the model's training forward: nanocode/model.py makes one call for each, and the choice
of how it runs on this platform is made here.

- `norm_to`: RMSNorm with a hand-written backward (from the output and one fp32 scale per row).
- `qkv_heads`: the q/k/v split with q/k RoPE + QK-norm and a hand-written backward, in one of two forms
  (QKV_FORMS): "flip" (XLA fusions) or "pallas" (nanocode/rope_pallas.py); "auto" picks per platform.
- `head_matmul`: the head's matmul with fp32 logits and a backward in the inputs' dtype.
- `matmul`, `attention`: the plain ops, or their bf16 forms on CPU (nanocode/cpu_matmul.py).

Each computes what a plain reference in the model computes (rms_norm, split_heads with JAX's autodiff, x @ w,
jax.nn.dot_product_attention); tests/test_model.py pins every form to it. Measurements: training/LOG.md.
"""
import contextlib
import contextvars
from functools import partial

import jax
import jax.numpy as jnp

from nanocode import cpu_matmul, per_device, runtime


def rms_scale(x):
    """1 / RMS(x) over the last axis, fp32, shape [..., 1]."""
    xf = x.astype(jnp.float32)
    return jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + 1e-6)


# --- RMSNorm -------------------------------------------------------------------------------------

def _rms_norm_grad(y, s, dy):
    """dL/dx of y = x * s(x), s = 1/RMS(x), from the output y and the scale s alone (x = y / s):
    dx = s * (dy - y * mean(dy * y)), in fp32. Autodiff of rms_norm instead keeps x (fp32 for an fp32
    residual) alive for the backward and rebuilds the chain of casts and means."""
    yf, dyf = y.astype(jnp.float32), dy.astype(jnp.float32)
    return s * (dyf - yf * jnp.mean(dyf * yf, axis=-1, keepdims=True))


def norm_to(x, dtype):
    """model.rms_norm(x).astype(dtype), with a hand-written backward (see _rms_norm_grad); the gradient
    comes back in x's dtype. Neutral in speed on an H200 at depth 12 (+-0.5 ms, 2026-11-22, training/LOG.md)."""
    return _norm_to(x, jnp.dtype(x.dtype), jnp.dtype(dtype))


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _norm_to(x, x_dtype, dtype):
    return (x.astype(jnp.float32) * rms_scale(x)).astype(x.dtype).astype(dtype)  # rms_norm's ops


def _norm_to_fwd(x, x_dtype, dtype):
    s = rms_scale(x)
    y = (x.astype(jnp.float32) * s).astype(x_dtype).astype(dtype)  # rms_norm's own ops: the same bits
    return y, (y, s)


def _norm_to_bwd(x_dtype, dtype, saved, dy):
    y, s = saved
    return (_rms_norm_grad(y, s, dy).astype(x_dtype),)


_norm_to.defvjp(_norm_to_fwd, _norm_to_bwd)


# --- q/k RoPE + QK-norm --------------------------------------------------------------------------

QKV_FORMS = ("auto", "flip", "pallas")  # qkv_heads' ways to compute the same function
_forced_form = contextvars.ContextVar("qkv_form", default="auto")


@contextlib.contextmanager
def qkv_form(form: str):
    """Trace the model's qkv_heads in `form` inside this block (training/bench_train.py times the forms
    against each other; a program compiled inside keeps its form)."""
    token = _forced_form.set(_check_form(form))
    try:
        yield
    finally:
        _forced_form.reset(token)


def _check_form(form: str) -> str:
    if form not in QKV_FORMS:
        raise ValueError(f"qkv form must be one of {', '.join(QKV_FORMS)}, got {form!r}")
    return form


def resolve_form(form: str | None = None) -> str:
    """The form qkv_heads runs, decided when it is traced (None: qkv_form's, by default "auto"). "auto" is
    "pallas" on NVIDIA GPUs where the kernels run on each device's own rows (one device, or a mesh in
    context: jax.set_mesh, as training/train_step.make_train_step sets), else "flip": on CPU the kernels
    would run in Pallas's slow interpreter, and on several devices with no mesh in context XLA would
    gather their operands."""
    form = _check_form(_forced_form.get() if form is None else form)
    if form != "auto":
        return form
    return "pallas" if per_device.cuda_gpu() and per_device.kernels_usable() else "flip"


def qkv_heads(qkv_BxTxF, pos_BxT, n_head: int, n_kv_head: int, head_dim: int, base: float, form: str | None = None):
    """model.split_heads (q [B,T,N,H], k, v [B,T,K,H], q and k rotated, then QK-normed) with a hand-written
    backward: dq and dk from the saved normalized outputs and per-head scales (_rms_norm_grad), rotated
    back, and dL/dqkv written once. JAX's transpose of the three slices is pad + pad + pad + add, one loop
    fusion over [B, T, 3C] (0.47 ms per layer on an H200 at depth 12, 2026-11-22).

    "flip": the forward by rope_qk_norm (split_heads' ops without its split + concatenate; XLA fuses them
    differently, so the values agree to fp32 rounding) and dL/dqkv behind an optimization barrier, so that
    XLA's GEMM fusion cannot take a second copy of the concatenate into one of the matmuls. "pallas": one
    Pallas kernel each way (nanocode/rope_pallas.py), the same ops summed in another order; under a mesh in
    context each device runs them on its own rows. form: see resolve_form."""
    return _qkv_heads(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, resolve_form(form))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _qkv_heads(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, form):
    """qkv_heads with its form resolved: the forward and the backward then use the same one."""
    return _qkv_heads_fwd(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, form)[0]


def _qkv_heads_fwd(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, form):
    B, T, _ = qkv_BxTxF.shape
    N, K, H = n_head, n_kv_head, head_dim
    outs, saved = [], []
    for first, M in ((0, N), (N, K)):
        if form == "pallas":
            from nanocode import rope_pallas  # jax.experimental.pallas only when asked for
            y_BxTxMxH, s_BxTxMx1 = rope_pallas.rope_norm(qkv_BxTxF, first, M, H, *_flat_cos_sin(pos_BxT, H, base))
        else:
            x_BxTxMxH = qkv_BxTxF[..., first * H:(first + M) * H].reshape(B, T, M, H)
            y_BxTxMxH, s_BxTxMx1 = rope_qk_norm(x_BxTxMxH, pos_BxT, base)
        outs.append(y_BxTxMxH)
        saved += [y_BxTxMxH, s_BxTxMx1]
    v_BxTxKxH = qkv_BxTxF[..., (N + K) * H:].reshape(B, T, K, H)
    return (outs[0], outs[1], v_BxTxKxH), (*saved, pos_BxT)


def _qkv_heads_bwd(n_head, n_kv_head, head_dim, base, form, saved, cts):
    yq, sq, yk, sk, pos_BxT = saved
    dq_BxTxNxH, dk_BxTxKxH, dv_BxTxKxH = cts
    B, T = pos_BxT.shape
    dt = yq.dtype
    if form == "pallas":
        from nanocode import rope_pallas
        return rope_pallas.qkv_grad(yq, sq, yk, sk, *_flat_cos_sin(pos_BxT, yq.shape[-1], base), dq_BxTxNxH,
                                    dk_BxTxKxH, dv_BxTxKxH), None
    dq = _rotate(_rms_norm_grad(yq, sq, dq_BxTxNxH), pos_BxT, base, inverse=True).astype(dt)
    dk = _rotate(_rms_norm_grad(yk, sk, dk_BxTxKxH), pos_BxT, base, inverse=True).astype(dt)
    dqkv_BxTxF = jnp.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv_BxTxKxH.astype(dt).reshape(B, T, -1)],
                                 axis=-1)
    return jax.lax.optimization_barrier(dqkv_BxTxF), None


_qkv_heads.defvjp(_qkv_heads_fwd, _qkv_heads_bwd)


def _rope_cos_sin(pos_BxT, head_dim: int, base: float):
    """cos and sin [B, T, 1, 1, H/2] of model.rotary's angles, by rotary's own ops (the same bits)."""
    H = head_dim
    inv_freq = 1.0 / (base ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))
    angle_BxTx1x1xH2 = (pos_BxT.astype(jnp.float32)[:, :, None] * inv_freq)[:, :, None, None, :]
    cos, sin = jnp.cos(angle_BxTx1x1xH2), jnp.sin(angle_BxTx1x1xH2)
    if runtime.backend() == "cpu" and pos_BxT.size > 1:  # not a decode step: its table is one position
        cos, sin = _table(cos), _table(sin)
    return cos, sin


def _table(x):
    """x materialised once (CPU): XLA's CPU fusions otherwise evaluate a cos or sin once per element of
    q and k that reads it, and XLA's CPU pipeline drops optimization barriers before fusing. A product with
    the identity is a matmul, which XLA does not fuse into its consumers; the bits are unchanged (x * 1 + 0s,
    fp32 HIGHEST). Depth 4 on the 2-core CPU: 1,590-1,703 -> 1,537-1,589 ms per step (2026-11-22)."""
    n = x.shape[-1]
    return jnp.matmul(x, jnp.eye(n, dtype=x.dtype), precision=jax.lax.Precision.HIGHEST)


def _flat_cos_sin(pos_BxT, head_dim: int, base: float):
    """cos, sin [B*T, head_dim/2]: the rows the Pallas kernels (nanocode/rope_pallas.py) read."""
    cos, sin = _rope_cos_sin(pos_BxT, head_dim, base)
    B, T = pos_BxT.shape
    return cos.reshape(B * T, head_dim // 2), sin.reshape(B * T, head_dim // 2)


def _rotate(x_BxTxMxH, pos_BxT, base: float, inverse: bool = False):
    """rotary's rotation in fp32 (inverse: by the opposite angle, its transpose), written with a reverse
    of the two halves instead of split + concatenate, so that XLA fuses it as plain elementwise work:
        forward   out1 = x1 cos + x2 sin,  out2 = x2 cos - x1 sin   (rotary's ops, the same bits)
        inverse   out1 = x1 cos - x2 sin,  out2 = x2 cos + x1 sin"""
    B, T, M, H = x_BxTxMxH.shape
    cos, sin = _rope_cos_sin(pos_BxT, H, base)
    sign_2x1 = jnp.array([-1.0, 1.0] if inverse else [1.0, -1.0], jnp.float32)[:, None]
    x_BxTxMx2xH2 = x_BxTxMxH.astype(jnp.float32).reshape(B, T, M, 2, H // 2)
    out = x_BxTxMx2xH2 * cos + jnp.flip(x_BxTxMx2xH2, axis=3) * (sign_2x1 * sin)
    return out.reshape(B, T, M, H)


def rope_qk_norm(x_BxTxMxH, pos_BxT, base: float):
    """rms_norm(rotary(x)) and its per-head scale [B, T, M, 1] (fp32), by the flip form of the rotation:
    the same ops as split_heads (RoPE in fp32, rounded to x's dtype, then QK-norm in fp32), but no
    split + concatenate, so XLA can read x once for the norm's sum of squares and once for the output
    instead of writing the rotated halves, concatenating them and reading them back twice."""
    z_BxTxMxH = _rotate(x_BxTxMxH, pos_BxT, base).astype(x_BxTxMxH.dtype)  # rotary's output
    s_BxTxMx1 = rms_scale(z_BxTxMxH)
    return (z_BxTxMxH.astype(jnp.float32) * s_BxTxMx1).astype(x_BxTxMxH.dtype), s_BxTxMx1  # rms_norm's ops


# --- matmuls and attention -----------------------------------------------------------------------

@jax.custom_vjp
def head_matmul(h_xC, w_CxV):
    """h @ w with fp32 logits out (exact for the loss) and a backward pass in the inputs' dtype. JAX's own
    transpose multiplies the fp32 cotangent with the bf16 operands, which XLA runs as fp32 GEMMs: 175 ms
    instead of 154 per step on an H200 at depth 12 (2026-11-22)."""
    return jnp.matmul(h_xC, w_CxV, preferred_element_type=jnp.float32)


def _head_matmul_fwd(h_xC, w_CxV):
    return head_matmul(h_xC, w_CxV), (h_xC, w_CxV)


def _head_matmul_bwd(saved, g_xV):
    h_xC, w_CxV = saved
    g_xV = g_xV.astype(h_xC.dtype)
    dh_xC = jnp.matmul(g_xV, w_CxV.T, preferred_element_type=jnp.float32).astype(h_xC.dtype)
    dw_CxV = jnp.einsum("...c,...v->cv", h_xC, g_xV, preferred_element_type=jnp.float32).astype(w_CxV.dtype)
    return dh_xC, dw_CxV


head_matmul.defvjp(_head_matmul_fwd, _head_matmul_bwd)


def matmul(x, w, matmul_dtype=None):
    """x @ w in x's dtype; with matmul_dtype (bf16 training matmuls on CPU) both inputs rounded to it and a
    hand-written backward whose operands XLA's bf16 dots accept (cpu_matmul.mixed_matmul)."""
    if matmul_dtype is not None and jnp.dtype(matmul_dtype) != x.dtype:
        return cpu_matmul.mixed_matmul(x, w, jnp.dtype(matmul_dtype))
    return x @ w.astype(x.dtype)


def attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, matmul_dtype=None):
    """Causal attention over the full sequence: jax.nn.dot_product_attention (cuDNN flash attention on GPU,
    runtime.attention_impl), or on CPU with bf16 matmuls cpu_matmul.causal_attention (row-major backward
    operands; k and v repeated to q's heads)."""
    dt, T = q_BxTxNxH.dtype, q_BxTxNxH.shape[1]
    if matmul_dtype is not None and matmul_dtype != dt and runtime.backend() == "cpu":
        N, K = q_BxTxNxH.shape[2], k_BxTxKxH.shape[2]
        k_BxTxNxH, v_BxTxNxH = (jnp.repeat(x, N // K, axis=2) for x in (k_BxTxKxH, v_BxTxKxH))
        return cpu_matmul.causal_attention(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, matmul_dtype)
    return jax.nn.dot_product_attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, is_causal=True,
                                        implementation=runtime.attention_impl(dtype=dt, seq_len=T))
