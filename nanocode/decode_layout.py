"""The GPU sampler's inference copy of a GPT: every matmul weight stored transposed, [out, in], in the
compute dtype, and each RMSNorm's scale folded past the matmul after it.

At batch 1 XLA rewrites each small matmul as an elementwise multiply plus a reduction, and a reduction over
the contiguous axis with fp32 accumulation runs faster: H200, 12 layers at width 768, 160 us vs 395 us for
the 48 matmuls (2026-11-22). A norm's per-row scale commutes with the matmul after it, so it is applied to
the matmul's output (q and k need none: QK-norm removes it); XLA then needs no separate normalize kernel,
two fewer per layer. On CPU XLA's own matmul is faster with [in, out] (2-core EPYC, depth 6: 1.6 vs 1.9 ms
for the block matmuls, 1.5 vs 2.1 ms for a vocab-32768 head), so there the sampler runs the model itself.

`TransposedGPT` has what the sampler uses of a GPT (config, dtype, hidden with a cache, logits) and
computes the same values; tests/test_sampler.py runs it on CPU against the model's full forward.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from nanocode import ops, runtime
from nanocode.model import GPT, ModuleList, cached_attention, soft_capped, split_heads, write_cache


def use_transposed(platform: str | None = None) -> bool:
    """Whether the sampler decodes from a TransposedGPT: on GPU (see the module docstring)."""
    return (platform or runtime.backend()) == "gpu"


def _matmul(x, w_OxI):
    """x @ w.T for a weight stored [out, in], accumulated in fp32, in x's dtype."""
    return jnp.einsum("...i,oi->...o", x, w_OxI.astype(x.dtype), preferred_element_type=jnp.float32).astype(x.dtype)


def _transposed(w, dtype):
    return nnx.Param(w[...].T.astype(dtype))


class _Block(nnx.Module):
    def __init__(self, block, dtype):
        self.attn_qkv, self.attn_proj = _transposed(block.attn.c_qkv, dtype), _transposed(block.attn.c_proj, dtype)
        self.mlp_fc, self.mlp_proj = _transposed(block.mlp.c_fc, dtype), _transposed(block.mlp.c_proj, dtype)


class TransposedGPT(nnx.Module):
    def __init__(self, model: GPT):
        """A copy of model's weights in its compute dtype, the matrices transposed."""
        self.config, self.dtype = model.config, model.dtype
        self.wte = nnx.Param(model.wte[...].astype(model.dtype))
        self.blocks = ModuleList([_Block(b, model.dtype) for b in model.blocks])
        self.lm_head = _transposed(model.lm_head, model.dtype)

    def hidden(self, ids_BxT, pos_BxT, cache, start_B):
        """GPT.hidden with a KV cache (fp32 residual stream): the same values, the same cache."""
        c, dt = self.config, self.dtype
        B, T = ids_BxT.shape
        N, K, H = c.n_head, c.n_kv_head, c.head_dim_
        x_BxTxC = ops.norm_to(self.wte[...][ids_BxT].astype(jnp.float32), jnp.float32)
        new_cache = []
        for block, kv in zip(self.blocks, cache):
            # each sublayer's input in the compute dtype and its norm's scale, applied after the matmul
            x_dt, s_BxTx1 = x_BxTxC.astype(dt), ops.rms_scale(x_BxTxC)
            qkv_BxTxF = _matmul(x_dt, block.attn_qkv[...])
            q_BxTxNxH, k_BxTxKxH, v_BxTxKxH = split_heads(qkv_BxTxF, pos_BxT, N, K, H, c.rope_base)
            v_BxTxKxH = (v_BxTxKxH * s_BxTx1[..., None]).astype(dt)
            kv = write_cache(*kv, k_BxTxKxH, v_BxTxKxH, start_B)
            y_BxTxNxH = cached_attention(q_BxTxNxH, *kv, pos_BxT)
            x_BxTxC = x_BxTxC + _matmul(y_BxTxNxH.reshape(B, T, N * H), block.attn_proj[...])
            x_dt, s_BxTx1 = x_BxTxC.astype(dt), ops.rms_scale(x_BxTxC)
            h_BxTxF = (_matmul(x_dt, block.mlp_fc[...]) * s_BxTx1).astype(dt)
            x_BxTxC = x_BxTxC + _matmul(jnp.square(jax.nn.relu(h_BxTxF)), block.mlp_proj[...])
            new_cache.append(kv)
        return ops.norm_to(x_BxTxC, dt), new_cache

    def logits(self, h_xC, soft_cap: bool = True):
        """GPT.logits, from the head stored [vocab, C]."""
        h_xC, w_VxC = h_xC.astype(self.dtype), self.lm_head[...].astype(self.dtype)
        logits = jnp.einsum("...c,vc->...v", h_xC, w_VxC, preferred_element_type=jnp.float32)
        return soft_capped(logits[..., :self.config.vocab_size], self.config.softcap if soft_cap else None)

