"""The GPT: a modern small transformer in the nanochat family, in flax NNX.

- one dial, `depth`: width = 64*depth, head dim 128 where it divides the width (smaller for tiny depths)
- RMSNorm without parameters (after the embedding, before each sublayer, before the head)
- rotary position embeddings, QK-norm, no biases, ReLU^2 MLP, untied embedding and head
- optional grouped-query attention (`gqa_ratio` query heads per key/value head), logit soft-cap

Dtype policy (nanochat's, made explicit): parameters are fp32 master weights; every matmul casts its
weight and input to `model.dtype` (bf16 on GPU, fp32 on CPU, see runtime.compute_dtype); RMSNorm, RoPE and
the logits are computed in fp32. The residual stream is `model.residual_dtype`: fp32 by default (the
sampler and every loaded model), the compute dtype where the trainer asks for it (TrainConfig
.residual_dtype; its in-training evaluation too): bf16 halves the bytes of every residual add and norm,
forward and backward, as nanochat's bf16 embedding does. The norms' gradients are written by hand
(`norm_to`, `qkv_heads`): the same forward ops, a backward from the normalized output and one fp32 scale
per row. The training forward's q/k RoPE + QK-norm (`qkv_heads`) writes the rotation with a reverse of
the two halves instead of split + concatenate (`rope_qk_norm`), which XLA fuses into two passes; the
sampler's KV-cache path keeps `split_heads`.

Two ways to run it:
- `model(ids_BxT) -> logits_BxTxV` (training, full causal attention through jax.nn.dot_product_attention,
  cuDNN flash attention on GPU);
- `model.hidden(ids_BxT, pos_BxT, cache)` with a KV cache (`init_cache`), used by the sampler for prefill
  and decode. The GPU sampler runs an inference copy built with `out_in=True`: weights stored transposed
  and RMSNorm scales folded past the matmuls, for batch-1 decode speed (see `dense` and `Block`).
`forward(graphdef, params, ids)` runs the model on `nnx.split` state, for code that jits a functional step.
"""
import math
from dataclasses import asdict, dataclass, fields
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from nanocode import per_device, runtime
from nanocode.cpu_matmul import causal_attention, mixed_matmul


class ConfigError(ValueError):
    pass


def _default_head_dim(width: int) -> int:
    # 128 keeps attention matmuls efficient on GPU; tiny test models need smaller heads to have >= 2.
    for head_dim in (128, 64, 32, 16, 8):
        if width % head_dim == 0 and width // head_dim >= 2:
            return head_dim
    return width


@dataclass(frozen=True)
class ModelConfig:
    depth: int                    # number of transformer blocks; also sets the width (64 * depth)
    vocab_size: int               # the tokenizer's vocab size (the tables are padded to a multiple of 128)
    seq_len: int = 2048           # context length: the KV cache holds this many positions
    head_dim: int | None = None   # None: 128 where it divides the width, smaller for tiny depths
    gqa_ratio: int = 1            # query heads per key/value head (1 = plain multi-head attention)
    softcap: float | None = 15.0  # logits = softcap * tanh(logits / softcap); None turns it off
    rope_base: float = 10000.0
    mlp_ratio: int = 4

    def __post_init__(self):
        def need(ok, what):
            if not ok:
                raise ConfigError(f"invalid model config: {what} (config: {self.to_dict()})")
        for name in ("depth", "vocab_size", "seq_len", "gqa_ratio", "mlp_ratio"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a positive integer, got {value!r}")
        if self.head_dim is not None:
            need(isinstance(self.head_dim, int) and self.head_dim >= 2 and self.head_dim % 2 == 0,
                 f"head_dim must be an even positive integer, got {self.head_dim!r}")
            need(self.width % self.head_dim == 0,
                 f"head_dim {self.head_dim} does not divide the width {self.width} (= 64 * depth)")
        else:
            need(self.head_dim_ % 2 == 0, f"width {self.width} gives an odd head dim; set head_dim")
        need(self.n_head % self.gqa_ratio == 0,
             f"gqa_ratio {self.gqa_ratio} does not divide the {self.n_head} query heads of depth {self.depth}")
        need(self.softcap is None or (isinstance(self.softcap, (int, float)) and self.softcap > 0),
             f"softcap must be a positive number or None, got {self.softcap!r}")
        need(isinstance(self.rope_base, (int, float)) and self.rope_base > 1,
             f"rope_base must be a number > 1, got {self.rope_base!r}")

    @property
    def width(self) -> int:
        return 64 * self.depth

    @property
    def head_dim_(self) -> int:
        """The head dim in use (the field may be None = derived)."""
        return self.head_dim if self.head_dim is not None else _default_head_dim(self.width)

    @property
    def n_head(self) -> int:
        return self.width // self.head_dim_

    @property
    def n_kv_head(self) -> int:
        return self.n_head // self.gqa_ratio

    @property
    def padded_vocab(self) -> int:
        # Tensor cores want the head's output dim a multiple of 128; the extra rows are never sampled.
        return -(-self.vocab_size // 128) * 128

    def num_params(self) -> int:
        C, H = self.width, self.head_dim_
        attn = C * (self.n_head * H) * 2 + C * (self.n_kv_head * H) * 2
        mlp = 2 * C * self.mlp_ratio * C
        return self.depth * (attn + mlp) + 2 * self.padded_vocab * C

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward), nanochat's estimate: 6 per non-embedding
        parameter (the head included) plus the attention score/value matmuls at full context."""
        matmul_params = self.num_params() - self.padded_vocab * self.width
        attention = 12 * self.depth * self.n_head * self.head_dim_ * self.seq_len
        return 6 * matmul_params + attention

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        missing = [k for k in ("depth", "vocab_size") if k not in d]
        if missing:
            raise ConfigError(f"model config lacks the required keys {missing}")
        return cls(**d)


# --- building blocks -----------------------------------------------------------------------------

def rms_scale(x):
    """1 / RMS(x) over the last axis, fp32, shape [..., 1]."""
    xf = x.astype(jnp.float32)
    return jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + 1e-6)


def rms_norm(x):
    """RMSNorm without a learned scale, computed in fp32 and returned in the input dtype."""
    return (x.astype(jnp.float32) * rms_scale(x)).astype(x.dtype)


def _rms_norm_grad(y, s, dy):
    """dL/dx of y = x * s(x), s = 1/RMS(x), from the output y and the scale s alone (x = y / s):
    dx = s * (dy - y * mean(dy * y)), in fp32. Autodiff of rms_norm instead keeps x (fp32 for an fp32
    residual) alive for the backward and rebuilds the chain of casts and means."""
    yf, dyf = y.astype(jnp.float32), dy.astype(jnp.float32)
    return s * (dyf - yf * jnp.mean(dyf * yf, axis=-1, keepdims=True))


def norm_to(x, dtype):
    """rms_norm(x).astype(dtype), with a hand-written backward (see _rms_norm_grad); the gradient comes
    back in x's dtype."""
    return _norm_to(x, jnp.dtype(x.dtype), jnp.dtype(dtype))


def _norm_to_autodiff(x, dtype):
    """norm_to through JAX's autodiff (to measure the hand-written backward against)."""
    return rms_norm(x).astype(dtype)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _norm_to(x, x_dtype, dtype):
    return rms_norm(x).astype(dtype)


def _norm_to_fwd(x, x_dtype, dtype):
    s = rms_scale(x)
    y = (x.astype(jnp.float32) * s).astype(x_dtype).astype(dtype)  # rms_norm's own ops: the same bits
    return y, (y, s)


def _norm_to_bwd(x_dtype, dtype, saved, dy):
    y, s = saved
    return (_rms_norm_grad(y, s, dy).astype(x_dtype),)


_norm_to.defvjp(_norm_to_fwd, _norm_to_bwd)


def rotary(x_BxTxNxH, pos_BxT, base: float):
    """Rotate the two halves of each head by position-dependent angles (RoPE, as in nanochat)."""
    H = x_BxTxNxH.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))
    angle_BxTx1xH2 = (pos_BxT.astype(jnp.float32)[:, :, None] * inv_freq)[:, :, None, :]
    cos, sin = jnp.cos(angle_BxTx1xH2), jnp.sin(angle_BxTx1xH2)
    x1, x2 = jnp.split(x_BxTxNxH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], axis=-1)
    return out.astype(x_BxTxNxH.dtype)


def _rope_cos_sin(pos_BxT, head_dim: int, base: float):
    """cos and sin [B, T, 1, 1, H/2] of rotary's angles, by rotary's own ops (the same bits)."""
    H = head_dim
    inv_freq = 1.0 / (base ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))
    angle_BxTx1x1xH2 = (pos_BxT.astype(jnp.float32)[:, :, None] * inv_freq)[:, :, None, None, :]
    cos, sin = jnp.cos(angle_BxTx1x1xH2), jnp.sin(angle_BxTx1x1xH2)
    if runtime.backend() == "cpu" and pos_BxT.size > 1:  # not a decode step: its table is one position
        cos, sin = _table(cos), _table(sin)
    return cos, sin


def _table(x):
    """x materialised once (CPU): XLA's CPU fusions otherwise evaluate a cos or sin once per element of
    q and k that reads it (4x per table entry at 2 heads), and XLA's CPU pipeline drops optimization
    barriers before fusing. A product with the identity is a matmul, which XLA does not fuse into its
    consumers; the bits are unchanged (x * 1 + 0s, fp32 HIGHEST). 2-core EPYC, depth 4, vocab 32768
    (`python -m training.bench_train --depth 4 --batch 8 --seq 512 --steps 5 --repeat 3`): the RoPE
    fusions took ~95 ms of a step in a profile; steps 1,590-1,703 ms -> 1,537-1,589."""
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
    instead of writing the rotated halves, concatenating them and reading them back twice. Equal to
    rms_norm(rotary(x)) to fp32 rounding (bit for bit where XLA fuses both alike)."""
    z_BxTxMxH = _rotate(x_BxTxMxH, pos_BxT, base).astype(x_BxTxMxH.dtype)  # rotary's output
    s_BxTxMx1 = rms_scale(z_BxTxMxH)
    return (z_BxTxMxH.astype(jnp.float32) * s_BxTxMx1).astype(x_BxTxMxH.dtype), s_BxTxMx1  # rms_norm's ops


def split_heads(qkv_BxTxF, pos_BxT, n_head: int, n_kv_head: int, head_dim: int, base: float):
    """q [B,T,N,H], k, v [B,T,K,H] from the fused projection's output, q and k rotated (RoPE) and then
    QK-normed, as Attention does (JAX's autodiff; see qkv_heads for the training path)."""
    B, T, _ = qkv_BxTxF.shape
    N, K, H = n_head, n_kv_head, head_dim
    q_BxTxNxH = qkv_BxTxF[..., :N * H].reshape(B, T, N, H)
    k_BxTxKxH = qkv_BxTxF[..., N * H:(N + K) * H].reshape(B, T, K, H)
    v_BxTxKxH = qkv_BxTxF[..., (N + K) * H:].reshape(B, T, K, H)
    return rms_norm(rotary(q_BxTxNxH, pos_BxT, base)), rms_norm(rotary(k_BxTxKxH, pos_BxT, base)), v_BxTxKxH


# qkv_heads' ways to compute the same function (training/bench_train.py); "auto" picks one (resolve_rope_impl)
ROPE_IMPLS = ("auto", "split", "flip", "pallas")


def resolve_rope_impl(rope_impl: str) -> str:
    """The rope_impl that qkv_heads runs, decided when it is traced: "auto" is "pallas" on NVIDIA GPUs
    where the kernels run on each device's own rows (one device, or a mesh in context: jax.set_mesh, as
    training/train_step.make_train_step sets), else "flip": on CPU the kernels would run in Pallas's slow
    interpreter, and on several devices with no mesh in context XLA would gather their operands."""
    if rope_impl not in ROPE_IMPLS:
        raise ValueError(f"rope_impl must be one of {', '.join(ROPE_IMPLS)}, got {rope_impl!r}")
    if rope_impl != "auto":
        return rope_impl
    return "pallas" if per_device.cuda_gpu() and per_device.kernels_usable() else "flip"


def qkv_heads(qkv_BxTxF, pos_BxT, n_head: int, n_kv_head: int, head_dim: int, base: float, rope_impl: str = "auto"):
    """split_heads with a hand-written backward: dq and dk from the saved normalized outputs and per-head
    scales (_rms_norm_grad), rotated back, and dL/dqkv written as one explicit concatenate of dq, dk, dv.
    JAX's transpose of the three slices is pad + pad + pad + add, one loop fusion over [B, T, 3C] that
    took 0.47 ms per layer on an H200 at depth 12 (0.81 with the norm gradients folded into it).

    rope_impl "split": the forward by split_heads' ops (rotary's split + concatenate); XLA wrote the rotated
    halves, concatenated them, reduced and normalized in separate passes, and wrote dL/dqkv twice (once
    for each of the projection's two backward matmuls). "flip": the forward by rope_qk_norm (the same
    ops; XLA fuses them differently, so the values agree to fp32 rounding) and dL/dqkv behind an
    optimization barrier, so that XLA's GEMM fusion cannot take a second copy of the concatenate into one
    of the matmuls. "pallas": two Pallas kernels (Triton on GPU, the interpreter on CPU) that do the
    forward and the backward in one pass each (nanocode/rope_pallas.py), the same ops summed
    in another order; under a mesh in context (jax.set_mesh) each device runs them on its own rows, and
    without one a sharded jit gathers their operands (XLA has no partitioning rule for a kernel). "auto"
    (the default): "pallas" where it is the fastest and runs per device, else "flip" (resolve_rope_impl)."""
    return _qkv_heads(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, resolve_rope_impl(rope_impl))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _qkv_heads(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, rope_impl):
    """qkv_heads with rope_impl resolved: the forward and the backward then use the same one."""
    return _qkv_heads_fwd(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, rope_impl)[0]


def _qkv_heads_fwd(qkv_BxTxF, pos_BxT, n_head, n_kv_head, head_dim, base, rope_impl):
    B, T, _ = qkv_BxTxF.shape
    N, K, H = n_head, n_kv_head, head_dim
    outs, saved = [], []
    for first, M in ((0, N), (N, K)):
        x_BxTxMxH = qkv_BxTxF[..., first * H:(first + M) * H].reshape(B, T, M, H)
        if rope_impl == "flip":
            y_BxTxMxH, s_BxTxMx1 = rope_qk_norm(x_BxTxMxH, pos_BxT, base)
        elif rope_impl == "pallas":
            from nanocode import rope_pallas  # jax.experimental.pallas only when asked for
            y_BxTxMxH, s_BxTxMx1 = rope_pallas.rope_norm(qkv_BxTxF, first, M, H, *_flat_cos_sin(pos_BxT, H, base))
        else:
            z_BxTxMxH = rotary(x_BxTxMxH, pos_BxT, base)
            s_BxTxMx1 = rms_scale(z_BxTxMxH)
            y_BxTxMxH = (z_BxTxMxH.astype(jnp.float32) * s_BxTxMx1).astype(z_BxTxMxH.dtype)  # rms_norm's ops
        outs.append(y_BxTxMxH)
        saved += [y_BxTxMxH, s_BxTxMx1]
    v_BxTxKxH = qkv_BxTxF[..., (N + K) * H:].reshape(B, T, K, H)
    return (outs[0], outs[1], v_BxTxKxH), (*saved, pos_BxT)


def _unrotate(g_BxTxMxH, pos_BxT, base):
    """The transpose of `rotary` (the rotation by the opposite angle), fp32."""
    return _rotate(g_BxTxMxH, pos_BxT, base, inverse=True)


def _qkv_heads_bwd(n_head, n_kv_head, head_dim, base, rope_impl, saved, cts):
    yq, sq, yk, sk, pos_BxT = saved
    dq_BxTxNxH, dk_BxTxKxH, dv_BxTxKxH = cts
    B, T = pos_BxT.shape
    dt = yq.dtype
    if rope_impl == "pallas":
        from nanocode import rope_pallas
        return rope_pallas.qkv_grad(yq, sq, yk, sk, *_flat_cos_sin(pos_BxT, yq.shape[-1], base), dq_BxTxNxH,
                                    dk_BxTxKxH, dv_BxTxKxH), None
    dq = _unrotate(_rms_norm_grad(yq, sq, dq_BxTxNxH), pos_BxT, base).astype(dt)
    dk = _unrotate(_rms_norm_grad(yk, sk, dk_BxTxKxH), pos_BxT, base).astype(dt)
    dqkv_BxTxF = jnp.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv_BxTxKxH.astype(dt).reshape(B, T, -1)],
                                 axis=-1)
    if rope_impl == "flip":
        dqkv_BxTxF = jax.lax.optimization_barrier(dqkv_BxTxF)
    return dqkv_BxTxF, None


_qkv_heads.defvjp(_qkv_heads_fwd, _qkv_heads_bwd)


def cached_attention(q_BxTxNxH, k_BxKxSxH, v_BxKxHxS, pos_BxT):
    """Attention of T new queries (at absolute positions pos) over a KV cache of S slots, where slot s
    holds position s; a query sees slots <= its own position. Scores and softmax in fp32.

    Layouts are chosen so both matmuls read the cache in place, contracting over its last axis: keys
    [B, K, S, H], values [B, K, H, S]. With [B, S, K, H] XLA copied a transposed cache every step
    (CPU, depth 6: 12 copies, ~1 ms of a 6.6 ms decode step)."""
    B, T, N, H = q_BxTxNxH.shape
    K, S = k_BxKxSxH.shape[1], k_BxKxSxH.shape[2]
    q_BxTxKxGxH = q_BxTxNxH.reshape(B, T, K, N // K, H)
    scores_BxKxGxTxS = jnp.einsum("btkgh,bksh->bkgts", q_BxTxKxGxH, k_BxKxSxH,
                                  preferred_element_type=jnp.float32) / math.sqrt(H)
    visible_BxTxS = jnp.arange(S)[None, None, :] <= pos_BxT[:, :, None]
    scores_BxKxGxTxS = jnp.where(visible_BxTxS[:, None, None], scores_BxKxGxTxS, -1e30)
    probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(v_BxKxHxS.dtype)
    y_BxTxKxGxH = jnp.einsum("bkgts,bkhs->btkgh", probs_BxKxGxTxS, v_BxKxHxS)
    return y_BxTxKxGxH.reshape(B, T, N, H)


def write_cache(k_BxKxSxH, v_BxKxHxS, k_BxTxKxH, v_BxTxKxH, start_B):
    """Write each row's T new keys/values at slots start_B[b] + 0..T-1 (rows sit at different positions),
    in place. The caller guarantees start + T <= S. One row (the agent, the benchmark) is a plain
    dynamic_update_slice; a scatter, which XLA bounds-checks by reading each old slot and selecting,
    costs two extra kernels per layer (H200, depth 12, batch 1: this and the norm folding of Block took
    decode from 2,717 to 3,094 tok/s)."""
    B, T = k_BxTxKxH.shape[:2]
    if B == 1:
        k_BxKxTxH = jnp.swapaxes(k_BxTxKxH, 1, 2).astype(k_BxKxSxH.dtype)
        v_BxKxHxT = jnp.transpose(v_BxTxKxH, (0, 2, 3, 1)).astype(v_BxKxHxS.dtype)
        zero, start = jnp.zeros((), jnp.int32), start_B[0].astype(jnp.int32)
        k_BxKxSxH = jax.lax.dynamic_update_slice(k_BxKxSxH, k_BxKxTxH, (zero, zero, start, zero))
        v_BxKxHxS = jax.lax.dynamic_update_slice(v_BxKxHxS, v_BxKxHxT, (zero, zero, zero, start))
        return k_BxKxSxH, v_BxKxHxS
    rows_Bx1 = jnp.arange(B)[:, None]
    slots_BxT = start_B[:, None] + jnp.arange(T)[None, :]
    k_BxKxSxH = k_BxKxSxH.at[rows_Bx1, :, slots_BxT, :].set(k_BxTxKxH.astype(k_BxKxSxH.dtype))
    v_BxKxHxS = v_BxKxHxS.at[rows_Bx1, :, :, slots_BxT].set(v_BxTxKxH.astype(v_BxKxHxS.dtype))
    return k_BxKxSxH, v_BxKxHxS


@jax.custom_vjp
def head_matmul(h_xC, w_CxV):
    """h @ w with fp32 logits out (exact for the loss) and a backward pass in the inputs' dtype. JAX's own
    transpose multiplies the fp32 cotangent with the bf16 operands, which XLA runs as fp32 GEMMs: on an
    H200 at depth 12 (vocab 32768, B=32, T=2048) that made the training step 175 ms instead of 154 ms."""
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


def dense(x, w, out_in: bool = False, matmul_dtype=None):
    """x @ w in x's dtype, for weights stored [in, out] (training, CPU) or transposed [out, in].

    The GPU sampler keeps a transposed copy (see Sampler): at batch 1 XLA rewrites each small matmul as
    an elementwise multiply plus a reduction, and a reduction over the contiguous axis with fp32
    accumulation runs 2.5x faster (H200, 12 layers at width 768: 160 us vs 395 us for the 48 matmuls).
    matmul_dtype: the inputs' dtype when it differs from x's (bf16 training matmuls on CPU: cpu_matmul).
    """
    if matmul_dtype is not None and jnp.dtype(matmul_dtype) != x.dtype and not out_in:
        return mixed_matmul(x, w, jnp.dtype(matmul_dtype))
    w = w.astype(x.dtype)
    if out_in:
        return jnp.einsum("...i,oi->...o", x, w, preferred_element_type=jnp.float32).astype(x.dtype)
    return x @ w


def _matrix(key, shape, out_in: bool, init):
    """A weight of logical shape [in, out], stored transposed when out_in."""
    w = init(key, shape)
    return w.T if out_in else w


def _uniform(key, shape, fan_in):
    bound = math.sqrt(3.0 / fan_in)  # the same std as normal(0, 1/sqrt(fan_in))
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, out_in: bool = False, qkv_vjp: bool = True,
                 rope_impl: str = "auto", matmul_dtype=None):
        C, N, K, H = config.width, config.n_head, config.n_kv_head, config.head_dim_
        # q, k and v in one matrix [C, (N + 2K) * H]: one matmul instead of three. Measured on the 2-core
        # CPU (6 layers, width 384, batch 1): 1.6 ms per decode step against 2.8 ms with three matrices.
        self.c_qkv = nnx.Param(_matrix(rngs.params(), (C, (N + 2 * K) * H), out_in,
                                       lambda k, s: _uniform(k, s, C)))
        # zero init: blocks start as the identity
        self.c_proj = nnx.Param(_matrix(rngs.params(), (N * H, C), out_in, lambda k, s: jnp.zeros(s)))
        self.n_head, self.n_kv_head, self.head_dim, self.rope_base = N, K, H, config.rope_base
        self.out_in, self.qkv_vjp, self.rope_impl, self.matmul_dtype = out_in, qkv_vjp, rope_impl, matmul_dtype

    def __call__(self, x_BxTxC, pos_BxT, kv=None, start_B=None, v_scale_BxTx1=None):
        """v_scale: the input's RMSNorm scale, when the caller folds it past the matmul (Block)."""
        B, T, _ = x_BxTxC.shape
        N, K, H, dt = self.n_head, self.n_kv_head, self.head_dim, x_BxTxC.dtype
        qkv_BxTxF = dense(x_BxTxC, self.c_qkv[...], self.out_in, self.matmul_dtype)
        # Full-sequence (training) forward: the hand-written backward, the same forward values either way.
        # The KV-cache path (the sampler) keeps split_heads' ops.
        if kv is None and self.qkv_vjp:
            q_BxTxNxH, k_BxTxKxH, v_BxTxKxH = qkv_heads(qkv_BxTxF, pos_BxT, N, K, H, self.rope_base, self.rope_impl)
        else:
            q_BxTxNxH, k_BxTxKxH, v_BxTxKxH = split_heads(qkv_BxTxF, pos_BxT, N, K, H, self.rope_base)
        if v_scale_BxTx1 is not None:
            v_BxTxKxH = (v_BxTxKxH * v_scale_BxTx1[..., None]).astype(dt)
        if kv is None and self.matmul_dtype is not None and self.matmul_dtype != dt and runtime.backend() == "cpu":
            # bf16 matmuls on CPU (see dense): the attention's too, with row-major backward operands.
            k_BxTxNxH, v_BxTxNxH = (jnp.repeat(x, N // K, axis=2) for x in (k_BxTxKxH, v_BxTxKxH))
            y_BxTxNxH = causal_attention(q_BxTxNxH, k_BxTxNxH, v_BxTxNxH, self.matmul_dtype)
        elif kv is None:
            y_BxTxNxH = jax.nn.dot_product_attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, is_causal=True,
                                                     implementation=runtime.attention_impl(dtype=dt, seq_len=T))
        else:
            kv = write_cache(*kv, k_BxTxKxH, v_BxTxKxH, start_B)
            y_BxTxNxH = cached_attention(q_BxTxNxH, *kv, pos_BxT)
        return dense(y_BxTxNxH.reshape(B, T, N * H), self.c_proj[...], self.out_in, self.matmul_dtype), kv


class MLP(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, out_in: bool = False, matmul_dtype=None):
        C, F = config.width, config.mlp_ratio * config.width
        self.c_fc = nnx.Param(_matrix(rngs.params(), (C, F), out_in, lambda k, s: _uniform(k, s, C)))
        self.c_proj = nnx.Param(_matrix(rngs.params(), (F, C), out_in, lambda k, s: jnp.zeros(s)))
        self.out_in, self.matmul_dtype = out_in, matmul_dtype

    def __call__(self, x_BxTxC, scale_BxTx1=None):
        """scale: the input's RMSNorm scale, when the caller folds it past the matmul (Block)."""
        h_BxTxF = dense(x_BxTxC, self.c_fc[...], self.out_in, self.matmul_dtype)
        if scale_BxTx1 is not None:
            h_BxTxF = (h_BxTxF * scale_BxTx1).astype(x_BxTxC.dtype)
        h_BxTxF = jnp.square(jax.nn.relu(h_BxTxF))  # ReLU^2 (Primer)
        return dense(h_BxTxF, self.c_proj[...], self.out_in, self.matmul_dtype)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, out_in: bool = False, norm_vjp: bool = True,
                 qkv_vjp: bool = True, rope_impl: str = "auto", matmul_dtype=None):
        self.attn = Attention(config, rngs=rngs, out_in=out_in, qkv_vjp=qkv_vjp, rope_impl=rope_impl,
                              matmul_dtype=matmul_dtype)
        self.mlp = MLP(config, rngs=rngs, out_in=out_in, matmul_dtype=matmul_dtype)
        self.norm_vjp = norm_vjp

    def __call__(self, x_BxTxC, pos_BxT, kv=None, start_B=None, dtype=jnp.float32):
        """The residual stream keeps x's dtype (GPT.residual_dtype): each sublayer's output is cast to it
        before the add (a no-op cast where both are fp32; with an fp32 stream and bf16 outputs the same
        promotion JAX would do)."""
        if self.mlp.out_in:
            # The sampler's GPU layout: each RMSNorm's per-row scale commutes with the matmul after it, so
            # apply it to the matmul's output (q and k need none: QK-norm removes it). XLA then needs no
            # separate normalize kernel: two fewer per layer.
            y_BxTxC, kv = self.attn(x_BxTxC.astype(dtype), pos_BxT, kv, start_B, rms_scale(x_BxTxC))
            x_BxTxC = x_BxTxC + y_BxTxC
            return x_BxTxC + self.mlp(x_BxTxC.astype(dtype), rms_scale(x_BxTxC)), kv
        norm = norm_to if self.norm_vjp else _norm_to_autodiff
        y_BxTxC, kv = self.attn(norm(x_BxTxC, dtype), pos_BxT, kv, start_B)
        x_BxTxC = x_BxTxC + y_BxTxC.astype(x_BxTxC.dtype)
        x_BxTxC = x_BxTxC + self.mlp(norm(x_BxTxC, dtype)).astype(x_BxTxC.dtype)
        return x_BxTxC, kv


# Rematerialisation per block for training (training/bench_train.py measures each): "dots" keeps the
# projection matmuls' outputs and recomputes the elementwise work (norms, RoPE, ReLU^2) in the backward
# pass, which saves memory traffic as well as memory; "full" keeps only each block's input.
REMAT_POLICIES = {"dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable, "full": None}

_List = getattr(nnx, "List", list)  # flax >= 0.12 wants module lists wrapped; older flax takes plain lists


class GPT(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, dtype=None, out_in: bool = False,
                 residual_dtype=None, norm_vjp: bool = True, qkv_vjp: bool = True, rope_impl: str = "auto",
                 matmul_dtype=None):
        """out_in: store every matmul weight transposed, [out, in] (the GPU sampler's inference copy; see
        `dense`). Training and checkpoints use the default [in, out].
        residual_dtype: the residual stream's dtype; None = fp32. A runtime choice of the trainer (see
        TrainConfig.residual_dtype), not part of ModelConfig: the parameters are the same either way.
        norm_vjp, qkv_vjp: the hand-written backward of the RMSNorms (norm_to) and of the q/k/v split with
        RoPE and QK-norm (qkv_heads); False: JAX's autodiff, to measure against.
        rope_impl: how qkv_heads computes its forward (ROPE_IMPLS; see qkv_heads), the same values; "auto"
        is resolved each time the model is traced (resolve_rope_impl).
        matmul_dtype: the training matmuls' input dtype where it differs from the compute dtype (bf16 on
        CPUs with bf16 dot instructions: runtime.train_matmul_dtype, TrainConfig.matmul_dtype); None = the
        compute dtype. The sampler and evaluation leave it None."""
        if rope_impl not in ROPE_IMPLS:
            raise ValueError(f"rope_impl must be one of {', '.join(ROPE_IMPLS)}, got {rope_impl!r}")
        self.config = config
        self.dtype = dtype if dtype is not None else runtime.compute_dtype()
        self.residual_dtype = jnp.dtype(residual_dtype if residual_dtype is not None else jnp.float32)
        self.out_in, self.norm_vjp, self.qkv_vjp, self.rope_impl = out_in, norm_vjp, qkv_vjp, rope_impl
        self.matmul_dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
        V, C = config.padded_vocab, config.width
        self.wte = nnx.Param(jax.random.normal(rngs.params(), (V, C), jnp.float32))
        self.blocks = _List([Block(config, rngs=rngs, out_in=out_in, norm_vjp=norm_vjp, qkv_vjp=qkv_vjp,
                                   rope_impl=rope_impl, matmul_dtype=self.matmul_dtype) for _ in range(config.depth)])
        self.lm_head = nnx.Param(_matrix(rngs.params(), (C, V), out_in,
                                         lambda k, s: 0.001 * jax.random.normal(k, s, jnp.float32)))

    def __call__(self, ids_BxT, remat: str = "none"):
        """Full causal forward: float32 logits [B, T, vocab_size]. `remat` (training): see REMAT_POLICIES."""
        B, T = ids_BxT.shape
        if T > self.config.seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than the model's context ({self.config.seq_len})")
        pos_BxT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        h_BxTxC, _ = self.hidden(ids_BxT, pos_BxT, remat=remat)
        return self.logits(h_BxTxC)

    def hidden(self, ids_BxT, pos_BxT, cache=None, start_B=None, remat: str = "none"):
        """Final normalized hidden states [B, T, C] (compute dtype) and the updated cache.

        Without a cache: full causal attention over these T tokens (pos is used for RoPE only).
        With a cache (`init_cache`): each row's T tokens are written at slots start_B[b]... and attend to
        all earlier slots; pos_BxT must be start_B[:, None] + arange(T)."""
        norm = norm_to if self.norm_vjp else _norm_to_autodiff
        x_BxTxC = norm(self.wte[...][ids_BxT].astype(jnp.float32), self.residual_dtype)
        new_cache = []
        run_block = Block.__call__
        if remat != "none" and cache is None:
            run_block = nnx.remat(Block.__call__, policy=REMAT_POLICIES[remat], static_argnums=(5,))
        for i, block in enumerate(self.blocks):
            x_BxTxC, kv = run_block(block, x_BxTxC, pos_BxT, None if cache is None else cache[i], start_B, self.dtype)
            new_cache.append(kv)
        return norm(x_BxTxC, self.dtype), (None if cache is None else new_cache)

    def logits(self, h_xC, soft_cap: bool = True):
        """Head + soft-cap over any leading shape: float32 logits [..., vocab_size]. Greedy decoding
        passes soft_cap=False: tanh is monotonic, so the argmax is the same without its cost (~0.2 ms
        per token on CPU at vocab 32768)."""
        h_xC, w = h_xC.astype(self.dtype), self.lm_head[...].astype(self.dtype)
        if self.out_in:
            logits = jnp.einsum("...c,vc->...v", h_xC, w, preferred_element_type=jnp.float32)
        else:
            logits = head_matmul(h_xC, w)
        logits = logits[..., :self.config.vocab_size]
        if soft_cap and self.config.softcap is not None:
            logits = self.config.softcap * jnp.tanh(logits / self.config.softcap)
        return logits


def init_cache(config: ModelConfig, batch: int, length: int | None = None, dtype=None):
    """An empty KV cache: per layer, keys [batch, n_kv_head, length, head_dim] and values
    [batch, n_kv_head, head_dim, length] (see cached_attention for why values are transposed)."""
    length = length or config.seq_len
    dtype = dtype if dtype is not None else runtime.compute_dtype()
    B, K, H = batch, config.n_kv_head, config.head_dim_
    return [(jnp.zeros((B, K, length, H), dtype), jnp.zeros((B, K, H, length), dtype))
            for _ in range(config.depth)]


def forward(graphdef, params, ids_BxT):
    """Run the model on split state (`graphdef, params = nnx.split(model)`): for jitted functional steps,
    where nnx.jit's per-call graph traversal would cost real time on small models."""
    return nnx.merge(graphdef, params)(ids_BxT)
