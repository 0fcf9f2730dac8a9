"""The GPT: a modern small transformer in the nanochat family, in flax NNX.

- one dial, `depth`: width = 64*depth, head dim 128 where it divides the width (smaller for tiny depths)
- RMSNorm without parameters (after the embedding, before each sublayer, before the head)
- rotary position embeddings, QK-norm, no biases, ReLU^2 MLP, untied embedding and head
- optional grouped-query attention (`gqa_ratio` query heads per key/value head), logit soft-cap

Dtype policy (nanochat's, made explicit): parameters are fp32 master weights; every matmul casts its
weight and input to `model.dtype` (bf16 on GPU, fp32 on CPU, see runtime.compute_dtype); RMSNorm, RoPE and
the logits are computed in fp32. The residual stream is `model.residual_dtype`: fp32 by default (the
sampler and every loaded model), the compute dtype where the trainer asks for it (TrainConfig
.residual_dtype): bf16 halves the bytes of every residual add and norm, as nanochat's bf16 embedding does.

Two ways to run it:
- `model(ids_BxT) -> logits_BxTxV` (training: full causal attention);
- `model.hidden(ids_BxT, pos_BxT, cache)` with a KV cache (`init_cache`), used by the sampler for prefill
  and decode.
`forward(graphdef, params, ids)` runs the model on `nnx.split` state, for code that jits a functional step.

The training forward's hot ops (the norms' and q/k RoPE's hand-written backwards, the head matmul, the
bf16 matmuls and attention on CPU) are one call each into nanocode/ops.py, which owns how they run on each
platform; each equals the plain ops written here (rms_norm, split_heads), as tests/test_model.py checks.
"""
import math
from dataclasses import asdict, dataclass, fields

import jax
import jax.numpy as jnp
from flax import nnx

from nanocode import ops, runtime
from nanocode.ops import rms_scale


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

def rms_norm(x):
    """RMSNorm without a learned scale, computed in fp32 and returned in the input dtype (the residual
    stream's norms run these ops as ops.norm_to, with a hand-written backward)."""
    return (x.astype(jnp.float32) * rms_scale(x)).astype(x.dtype)


def rotary(x_BxTxNxH, pos_BxT, base: float):
    """Rotate the two halves of each head by position-dependent angles (RoPE, as in nanochat)."""
    H = x_BxTxNxH.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))
    angle_BxTx1xH2 = (pos_BxT.astype(jnp.float32)[:, :, None] * inv_freq)[:, :, None, :]
    cos, sin = jnp.cos(angle_BxTx1xH2), jnp.sin(angle_BxTx1xH2)
    x1, x2 = jnp.split(x_BxTxNxH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], axis=-1)
    return out.astype(x_BxTxNxH.dtype)


def split_heads(qkv_BxTxF, pos_BxT, n_head: int, n_kv_head: int, head_dim: int, base: float):
    """q [B,T,N,H], k, v [B,T,K,H] from the fused projection's output, q and k rotated (RoPE) and then
    QK-normed: the KV-cache path's ops. The training forward computes the same by ops.qkv_heads."""
    B, T, _ = qkv_BxTxF.shape
    N, K, H = n_head, n_kv_head, head_dim
    q_BxTxNxH = qkv_BxTxF[..., :N * H].reshape(B, T, N, H)
    k_BxTxKxH = qkv_BxTxF[..., N * H:(N + K) * H].reshape(B, T, K, H)
    v_BxTxKxH = qkv_BxTxF[..., (N + K) * H:].reshape(B, T, K, H)
    return rms_norm(rotary(q_BxTxNxH, pos_BxT, base)), rms_norm(rotary(k_BxTxKxH, pos_BxT, base)), v_BxTxKxH


# Initialisers. Each weight draws one key, the zero-initialised ones too, so that every later weight
# keeps the key it has always had (the same random init from the same seed).
def _uniform(key, shape, fan_in):
    bound = math.sqrt(3.0 / fan_in)  # the same std as normal(0, 1/sqrt(fan_in))
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _zeros(key, shape):
    del key
    return jnp.zeros(shape)  # output projections: blocks start as the identity


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, matmul_dtype=None):
        C, N, K, H = config.width, config.n_head, config.n_kv_head, config.head_dim_
        # q, k and v in one matrix [C, (N + 2K) * H]: one matmul instead of three. Measured on the 2-core
        # CPU (6 layers, width 384, batch 1): 1.6 ms per decode step against 2.8 ms with three matrices.
        self.c_qkv = nnx.Param(_uniform(rngs.params(), (C, (N + 2 * K) * H), C))
        self.c_proj = nnx.Param(_zeros(rngs.params(), (N * H, C)))
        self.n_head, self.n_kv_head, self.head_dim, self.rope_base = N, K, H, config.rope_base
        self.matmul_dtype = matmul_dtype

    def __call__(self, x_BxTxC, pos_BxT, kv=None, start_B=None):
        B, T, _ = x_BxTxC.shape
        N, K, H = self.n_head, self.n_kv_head, self.head_dim
        qkv_BxTxF = ops.matmul(x_BxTxC, self.c_qkv[...], self.matmul_dtype)
        if kv is None:  # the whole sequence (training): RoPE + QK-norm with a hand-written backward
            q_BxTxNxH, k_BxTxKxH, v_BxTxKxH = ops.qkv_heads(qkv_BxTxF, pos_BxT, N, K, H, self.rope_base)
            y_BxTxNxH = ops.attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, self.matmul_dtype)
        else:  # new tokens against the KV cache (the sampler)
            q_BxTxNxH, k_BxTxKxH, v_BxTxKxH = split_heads(qkv_BxTxF, pos_BxT, N, K, H, self.rope_base)
            kv = write_cache(*kv, k_BxTxKxH, v_BxTxKxH, start_B)
            y_BxTxNxH = cached_attention(q_BxTxNxH, *kv, pos_BxT)
        return ops.matmul(y_BxTxNxH.reshape(B, T, N * H), self.c_proj[...], self.matmul_dtype), kv


class MLP(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, matmul_dtype=None):
        C, F = config.width, config.mlp_ratio * config.width
        self.c_fc = nnx.Param(_uniform(rngs.params(), (C, F), C))
        self.c_proj = nnx.Param(_zeros(rngs.params(), (F, C)))
        self.matmul_dtype = matmul_dtype

    def __call__(self, x_BxTxC):
        h_BxTxF = ops.matmul(x_BxTxC, self.c_fc[...], self.matmul_dtype)
        h_BxTxF = jnp.square(jax.nn.relu(h_BxTxF))  # ReLU^2 (Primer)
        return ops.matmul(h_BxTxF, self.c_proj[...], self.matmul_dtype)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, matmul_dtype=None):
        self.attn = Attention(config, rngs=rngs, matmul_dtype=matmul_dtype)
        self.mlp = MLP(config, rngs=rngs, matmul_dtype=matmul_dtype)

    def __call__(self, x_BxTxC, pos_BxT, kv=None, start_B=None, dtype=jnp.float32):
        """The residual stream keeps x's dtype (GPT.residual_dtype): each sublayer's output is cast to it
        before the add (a no-op cast where both are fp32; with an fp32 stream and bf16 outputs the same
        promotion JAX would do). `dtype`: the sublayers' compute dtype."""
        y_BxTxC, kv = self.attn(ops.norm_to(x_BxTxC, dtype), pos_BxT, kv, start_B)
        x_BxTxC = x_BxTxC + y_BxTxC.astype(x_BxTxC.dtype)
        x_BxTxC = x_BxTxC + self.mlp(ops.norm_to(x_BxTxC, dtype)).astype(x_BxTxC.dtype)
        return x_BxTxC, kv


# Rematerialisation per block for training (training/bench_train.py measures each): "dots" keeps the
# projection matmuls' outputs and recomputes the elementwise work (norms, RoPE, ReLU^2) in the backward
# pass, which saves memory traffic as well as memory; "full" keeps only each block's input.
REMAT_POLICIES = {"dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable, "full": None}

ModuleList = getattr(nnx, "List", list)  # flax >= 0.12 wants module lists wrapped; older flax takes plain lists


class GPT(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, dtype=None, residual_dtype=None, matmul_dtype=None):
        """dtype: the compute dtype (None: runtime.compute_dtype()).
        residual_dtype: the residual stream's dtype; None = fp32. A runtime choice of the trainer (see
        TrainConfig.residual_dtype), not part of ModelConfig: the parameters are the same either way.
        matmul_dtype: the training matmuls' input dtype where it differs from the compute dtype (bf16 on
        CPUs with bf16 dot instructions: runtime.train_matmul_dtype, TrainConfig.matmul_dtype); None = the
        compute dtype. The sampler and evaluation leave it None."""
        self.config = config
        self.dtype = dtype if dtype is not None else runtime.compute_dtype()
        self.residual_dtype = jnp.dtype(residual_dtype if residual_dtype is not None else jnp.float32)
        self.matmul_dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
        V, C = config.padded_vocab, config.width
        self.wte = nnx.Param(jax.random.normal(rngs.params(), (V, C), jnp.float32))
        self.blocks = ModuleList([Block(config, rngs=rngs, matmul_dtype=self.matmul_dtype) for _ in range(config.depth)])
        self.lm_head = nnx.Param(0.001 * jax.random.normal(rngs.params(), (C, V), jnp.float32))

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
        x_BxTxC = ops.norm_to(self.wte[...][ids_BxT].astype(jnp.float32), self.residual_dtype)
        new_cache = []
        run_block = Block.__call__
        if remat != "none" and cache is None:
            run_block = nnx.remat(Block.__call__, policy=REMAT_POLICIES[remat], static_argnums=(5,))
        for i, block in enumerate(self.blocks):
            x_BxTxC, kv = run_block(block, x_BxTxC, pos_BxT, None if cache is None else cache[i], start_B, self.dtype)
            new_cache.append(kv)
        return ops.norm_to(x_BxTxC, self.dtype), (None if cache is None else new_cache)

    def logits(self, h_xC, soft_cap: bool = True):
        """Head + soft-cap over any leading shape: float32 logits [..., vocab_size]. Greedy decoding
        passes soft_cap=False: tanh is monotonic, so the argmax is the same without its cost (~0.2 ms
        per token on CPU at vocab 32768)."""
        logits = ops.head_matmul(h_xC.astype(self.dtype), self.lm_head[...].astype(self.dtype))
        return soft_capped(logits[..., :self.config.vocab_size], self.config.softcap if soft_cap else None)


def soft_capped(logits, cap: float | None):
    """cap * tanh(logits / cap), or the logits themselves where cap is None."""
    return logits if cap is None else cap * jnp.tanh(logits / cap)


# --- the KV cache --------------------------------------------------------------------------------

def init_cache(config: ModelConfig, batch: int, length: int | None = None, dtype=None):
    """An empty KV cache: per layer, keys [batch, n_kv_head, length, head_dim] and values
    [batch, n_kv_head, head_dim, length] (see cached_attention for why values are transposed)."""
    length = length or config.seq_len
    dtype = dtype if dtype is not None else runtime.compute_dtype()
    B, K, H = batch, config.n_kv_head, config.head_dim_
    return [(jnp.zeros((B, K, length, H), dtype), jnp.zeros((B, K, H, length), dtype))
            for _ in range(config.depth)]


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
    costs two extra kernels per layer (H200, depth 12, batch 1: this and the GPU layout's norm folding,
    nanocode/decode_layout.py, took decode from 2,717 to 3,094 tok/s; 2026-11-22)."""
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


def forward(graphdef, params, ids_BxT):
    """Run the model on split state (`graphdef, params = nnx.split(model)`): for jitted functional steps,
    where nnx.jit's per-call graph traversal would cost real time on small models."""
    return nnx.merge(graphdef, params)(ids_BxT)
