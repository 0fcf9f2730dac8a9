"""The GPT: a modern small transformer in the nanochat family, in flax NNX.

- one dial, `depth`: width = 64*depth, head dim 128 where it divides the width (smaller for tiny depths)
- RMSNorm without parameters (after the embedding, before each sublayer, before the head)
- rotary position embeddings, QK-norm, no biases, ReLU^2 MLP, untied embedding and head
- optional grouped-query attention (`gqa_ratio` query heads per key/value head), logit soft-cap

Dtype policy (nanochat's, made explicit): parameters are fp32 master weights; every matmul casts its
weight and input to `model.dtype` (bf16 on GPU, fp32 on CPU, see runtime.compute_dtype); the residual
stream and the returned logits are fp32.

Two ways to run it:
- `model(ids_BxT) -> logits_BxTxV` (training, full causal attention through jax.nn.dot_product_attention,
  cuDNN flash attention on GPU);
- `model.hidden(ids_BxT, pos_BxT, cache)` with a KV cache (`init_cache`), used by the sampler for prefill
  and decode.
`forward(graphdef, params, ids)` runs the model on `nnx.split` state, for code that jits a functional step.
"""
import math
from dataclasses import asdict, dataclass, fields

import jax
import jax.numpy as jnp
from flax import nnx

from nanocode import runtime


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
    """RMSNorm without a learned scale, computed in fp32 and returned in the input dtype."""
    xf = x.astype(jnp.float32)
    return (xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + 1e-6)).astype(x.dtype)


def rotary(x_BxTxNxH, pos_BxT, base: float):
    """Rotate the two halves of each head by position-dependent angles (RoPE, as in nanochat)."""
    H = x_BxTxNxH.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))
    angle_BxTx1xH2 = (pos_BxT.astype(jnp.float32)[:, :, None] * inv_freq)[:, :, None, :]
    cos, sin = jnp.cos(angle_BxTx1xH2), jnp.sin(angle_BxTx1xH2)
    x1, x2 = jnp.split(x_BxTxNxH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], axis=-1)
    return out.astype(x_BxTxNxH.dtype)


def cached_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, pos_BxT):
    """Attention of T new queries (at absolute positions pos) over a KV cache of S slots, where slot s
    holds position s; a query sees slots <= its own position. Scores and softmax in fp32."""
    B, T, N, H = q_BxTxNxH.shape
    S, K = k_BxSxKxH.shape[1], k_BxSxKxH.shape[2]
    q_BxTxKxGxH = q_BxTxNxH.reshape(B, T, K, N // K, H)
    scores_BxKxGxTxS = jnp.einsum("btkgh,bskh->bkgts", q_BxTxKxGxH, k_BxSxKxH,
                                  preferred_element_type=jnp.float32) / math.sqrt(H)
    visible_BxTxS = jnp.arange(S)[None, None, :] <= pos_BxT[:, :, None]
    scores_BxKxGxTxS = jnp.where(visible_BxTxS[:, None, None], scores_BxKxGxTxS, -1e30)
    probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(v_BxSxKxH.dtype)
    y_BxTxKxGxH = jnp.einsum("bkgts,bskh->btkgh", probs_BxKxGxTxS, v_BxSxKxH)
    return y_BxTxKxGxH.reshape(B, T, N, H)


def write_cache(cache_BxSxKxH, new_BxTxKxH, start_B):
    """Write each row's T new entries at its own start slot (rows of a batch sit at different positions).
    The caller guarantees start + T <= S (dynamic_update_slice would clamp, not fail)."""
    def one_row(cache_SxKxH, new_TxKxH, start):
        return jax.lax.dynamic_update_slice(cache_SxKxH, new_TxKxH.astype(cache_SxKxH.dtype), (start, 0, 0))
    return jax.vmap(one_row)(cache_BxSxKxH, new_BxTxKxH, start_B)


def _uniform(key, shape, fan_in):
    bound = math.sqrt(3.0 / fan_in)  # the same std as normal(0, 1/sqrt(fan_in))
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        C, N, K, H = config.width, config.n_head, config.n_kv_head, config.head_dim_
        self.c_q = nnx.Param(_uniform(rngs.params(), (C, N * H), C))
        self.c_k = nnx.Param(_uniform(rngs.params(), (C, K * H), C))
        self.c_v = nnx.Param(_uniform(rngs.params(), (C, K * H), C))
        self.c_proj = nnx.Param(jnp.zeros((N * H, C), jnp.float32))  # zero init: blocks start as identity
        self.n_head, self.n_kv_head, self.head_dim, self.rope_base = N, K, H, config.rope_base

    def __call__(self, x_BxTxC, pos_BxT, kv=None, start_B=None):
        B, T, _ = x_BxTxC.shape
        N, K, H, dt = self.n_head, self.n_kv_head, self.head_dim, x_BxTxC.dtype
        q_BxTxNxH = (x_BxTxC @ self.c_q[...].astype(dt)).reshape(B, T, N, H)
        k_BxTxKxH = (x_BxTxC @ self.c_k[...].astype(dt)).reshape(B, T, K, H)
        v_BxTxKxH = (x_BxTxC @ self.c_v[...].astype(dt)).reshape(B, T, K, H)
        q_BxTxNxH = rms_norm(rotary(q_BxTxNxH, pos_BxT, self.rope_base))
        k_BxTxKxH = rms_norm(rotary(k_BxTxKxH, pos_BxT, self.rope_base))
        if kv is None:
            y_BxTxNxH = jax.nn.dot_product_attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, is_causal=True,
                                                     implementation=runtime.attention_impl(dtype=dt))
        else:
            k_BxSxKxH = write_cache(kv[0], k_BxTxKxH, start_B)
            v_BxSxKxH = write_cache(kv[1], v_BxTxKxH, start_B)
            kv = (k_BxSxKxH, v_BxSxKxH)
            y_BxTxNxH = cached_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, pos_BxT)
        return y_BxTxNxH.reshape(B, T, N * H) @ self.c_proj[...].astype(dt), kv


class MLP(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        C, F = config.width, config.mlp_ratio * config.width
        self.c_fc = nnx.Param(_uniform(rngs.params(), (C, F), C))
        self.c_proj = nnx.Param(jnp.zeros((F, C), jnp.float32))

    def __call__(self, x_BxTxC):
        dt = x_BxTxC.dtype
        h_BxTxF = jnp.square(jax.nn.relu(x_BxTxC @ self.c_fc[...].astype(dt)))  # ReLU^2 (Primer)
        return h_BxTxF @ self.c_proj[...].astype(dt)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.attn = Attention(config, rngs=rngs)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(self, x_BxTxC, pos_BxT, kv=None, start_B=None, dtype=jnp.float32):
        y_BxTxC, kv = self.attn(rms_norm(x_BxTxC).astype(dtype), pos_BxT, kv, start_B)
        x_BxTxC = x_BxTxC + y_BxTxC
        x_BxTxC = x_BxTxC + self.mlp(rms_norm(x_BxTxC).astype(dtype))
        return x_BxTxC, kv


_List = getattr(nnx, "List", list)  # flax >= 0.12 wants module lists wrapped; older flax takes plain lists


class GPT(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, dtype=None):
        self.config = config
        self.dtype = dtype if dtype is not None else runtime.compute_dtype()
        V, C = config.padded_vocab, config.width
        self.wte = nnx.Param(jax.random.normal(rngs.params(), (V, C), jnp.float32))
        self.blocks = _List([Block(config, rngs=rngs) for _ in range(config.depth)])
        self.lm_head = nnx.Param(0.001 * jax.random.normal(rngs.params(), (C, V), jnp.float32))

    def __call__(self, ids_BxT):
        """Full causal forward: float32 logits [B, T, vocab_size]."""
        B, T = ids_BxT.shape
        if T > self.config.seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than the model's context ({self.config.seq_len})")
        pos_BxT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        h_BxTxC, _ = self.hidden(ids_BxT, pos_BxT)
        return self.logits(h_BxTxC)

    def hidden(self, ids_BxT, pos_BxT, cache=None, start_B=None):
        """Final normalized hidden states [B, T, C] (compute dtype) and the updated cache.

        Without a cache: full causal attention over these T tokens (pos is used for RoPE only).
        With a cache (`init_cache`): each row's T tokens are written at slots start_B[b]... and attend to
        all earlier slots; pos_BxT must be start_B[:, None] + arange(T)."""
        x_BxTxC = rms_norm(self.wte[...][ids_BxT])
        new_cache = []
        for i, block in enumerate(self.blocks):
            x_BxTxC, kv = block(x_BxTxC, pos_BxT, None if cache is None else cache[i], start_B, self.dtype)
            new_cache.append(kv)
        return rms_norm(x_BxTxC).astype(self.dtype), (None if cache is None else new_cache)

    def logits(self, h_xC):
        """Head + soft-cap over any leading shape: float32 logits [..., vocab_size]."""
        logits = jnp.matmul(h_xC.astype(self.dtype), self.lm_head[...].astype(self.dtype),
                            preferred_element_type=jnp.float32)[..., :self.config.vocab_size]
        if self.config.softcap is not None:
            logits = self.config.softcap * jnp.tanh(logits / self.config.softcap)
        return logits


def init_cache(config: ModelConfig, batch: int, length: int | None = None, dtype=None):
    """An empty KV cache: one (k, v) pair of [batch, length, n_kv_head, head_dim] per layer."""
    length = length or config.seq_len
    dtype = dtype if dtype is not None else runtime.compute_dtype()
    shape = (batch, length, config.n_kv_head, config.head_dim_)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.depth)]


def forward(graphdef, params, ids_BxT):
    """Run the model on split state (`graphdef, params = nnx.split(model)`): for jitted functional steps,
    where nnx.jit's per-call graph traversal would cost real time on small models."""
    return nnx.merge(graphdef, params)(ids_BxT)
