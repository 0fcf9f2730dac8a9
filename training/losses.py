"""Next-token losses of a GPT: a fused head + soft-capped cross entropy for training, a plain one for eval.

The [tokens, vocab] logits are by far the biggest arrays of a training step (65536 x 32768 fp32 = 8.6 GB
at depth 12, B=32, T=2048), so how often they cross HBM decides a good part of the step time. Autodiff
through `model.logits` + optax's cross entropy wrote and re-read them ~8 times (log-softmax, tanh, their
gradients, casts); on an H200 this file took the step from ~142 to 128 ms, the cross entropy's own kernels
now ~8 ms (bound by tanh/exp throughput more than bytes). `head_cross_entropy` does it in three passes:
the matmul writes fp32 logits, one fused reduction computes log-sum-exp, one fused elementwise pass
writes the gradient dL/dlogits in bf16 *during the forward* (the loss is the logits' only consumer, so
the gradient is known up to each token's incoming weight g). The backward then never touches [N, V]
except inside the two matmuls, because per-row weights commute with them:
    dh = (g * D) @ W^T = g * (D @ W^T)        dW = h^T (g * D) = (g * h)^T D
"""
from functools import partial

import jax
import jax.numpy as jnp


def _softcap(logits, cap):
    return logits if cap is None else cap * jnp.tanh(logits / cap)


def _lse(z_NxV, cap, valid_V):
    """log-sum-exp over the valid columns (the head's padding columns are not tokens)."""
    if cap is not None and cap <= 60:
        # Soft-capped logits lie in [-cap, cap]: exp cannot overflow, so skip the max pass over [N, V].
        m_Nx1 = jnp.zeros(z_NxV.shape[:-1] + (1,), z_NxV.dtype)
    else:
        m_Nx1 = jax.lax.stop_gradient(jnp.max(jnp.where(valid_V, z_NxV, -jnp.inf), axis=-1, keepdims=True))
    e_NxV = jnp.where(valid_V, jnp.exp(z_NxV - m_Nx1), 0.0)
    return m_Nx1[..., 0] + jnp.log(jnp.sum(e_NxV, axis=-1))


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def head_cross_entropy(h_NxC, w_CxV, targets_N, vocab_size: int, cap: float | None):
    """Per-token NLL (fp32 nats) of `targets` under logits `cap * tanh((h @ w)[:, :vocab_size] / cap)`.

    h and w in the compute dtype (bf16 on GPU); the logits are accumulated and used in fp32. Matches
    `model.logits` + softmax cross entropy (tests/test_pretrain_step.py checks values and gradients)."""
    return _fwd(h_NxC, w_CxV, targets_N, vocab_size, cap)[0]


def _fwd(h_NxC, w_CxV, targets_N, vocab_size, cap):
    logits_NxV = jnp.matmul(h_NxC, w_CxV, preferred_element_type=jnp.float32)
    valid_V = jnp.arange(logits_NxV.shape[-1]) < vocab_size
    z_NxV = _softcap(logits_NxV, cap)
    lse_N = _lse(z_NxV, cap, valid_V)
    target_logit_N = jnp.take_along_axis(z_NxV, targets_N[:, None], axis=-1)[:, 0]
    # dNLL/dlogits = (softmax(z) - onehot(target)) * dz/dlogits, with dz/dlogits = 1 - tanh^2.
    onehot_NxV = targets_N[:, None] == jnp.arange(logits_NxV.shape[-1], dtype=targets_N.dtype)
    d_NxV = jnp.where(valid_V, jnp.exp(z_NxV - lse_N[:, None]), 0.0) - onehot_NxV
    if cap is not None:
        d_NxV = d_NxV * (1 - jnp.square(z_NxV / cap))
    return lse_N - target_logit_N, (h_NxC, w_CxV, d_NxV.astype(h_NxC.dtype))


def _bwd(vocab_size, cap, saved, g_N):
    h_NxC, w_CxV, d_NxV = saved
    g_Nx1 = g_N[:, None]
    dh_NxC = (jnp.matmul(d_NxV, w_CxV.T, preferred_element_type=jnp.float32) * g_Nx1).astype(h_NxC.dtype)
    gh_NxC = (h_NxC.astype(jnp.float32) * g_Nx1).astype(h_NxC.dtype)
    dw_CxV = jnp.matmul(gh_NxC.T, d_NxV, preferred_element_type=jnp.float32).astype(w_CxV.dtype)
    return dh_NxC, dw_CxV, None


head_cross_entropy.defvjp(_fwd, _bwd)


def _positions(model, ids_BxT):
    B, T = ids_BxT.shape
    if T > model.config.seq_len:
        raise ValueError(f"sequence of {T} tokens is longer than the model's context ({model.config.seq_len})")
    return jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))


def token_losses(model, ids_BxT, targets_BxT, remat: str = "none"):
    """Per-token NLL [B, T] (fp32 nats) of `targets` after `ids`, differentiable (training)."""
    B, T = ids_BxT.shape
    if getattr(model, "out_in", False):
        raise ValueError("token_losses trains a model with [in, out] weights; this one stores them transposed "
                         "(out_in=True, the sampler's inference copy)")
    h_BxTxC, _ = model.hidden(ids_BxT, _positions(model, ids_BxT), remat=remat)
    h_NxC = h_BxTxC.reshape(B * T, -1).astype(model.dtype)
    nll_N = head_cross_entropy(h_NxC, model.lm_head[...].astype(model.dtype), targets_BxT.reshape(-1),
                               model.config.vocab_size, model.config.softcap)
    return nll_N.reshape(B, T)


def token_losses_eval(model, ids_BxT, targets_BxT):
    """Per-token NLL [B, T] for evaluation: the model's own logits, no gradient bookkeeping."""
    h_BxTxC, _ = model.hidden(ids_BxT, _positions(model, ids_BxT))
    logits_BxTxV = model.logits(h_BxTxC)
    lse_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
    return lse_BxT - jnp.take_along_axis(logits_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
