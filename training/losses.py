"""Next-token losses of a GPT: a fused head + soft-capped cross entropy for training, a plain one for eval.

The [tokens, vocab] logits are by far the biggest arrays of a training step (65536 x 32768 at depth 12,
B=32, T=2048), so how often they cross HBM decides a good part of the step time. Autodiff through
`model.logits` + optax's cross entropy wrote and re-read them ~8 times in fp32 (log-softmax, tanh, their
gradients, casts). `head_cross_entropy` does it in three passes: the matmul writes the logits (bf16 on
GPU), one pass computes log-sum-exp, one writes the gradient dL/dlogits in bf16 *during the forward*
(the loss is the logits' only consumer, so the gradient is known up to each token's incoming weight g).
The backward then never touches [N, V] except inside the two matmuls, because per-row weights commute
with them:
    dh = (g * D) @ W^T = g * (D @ W^T)        dW = h^T (g * D) = (g * h)^T D
On an H200 at depth 12 the head matmul and these passes took 13.5 ms with fp32 logits and ~7.6 with bf16
logits and the passes as Pallas kernels (training/ce_pallas.py; 2026-11-22, the steps in training/LOG.md).
"""
from functools import partial

import jax
import jax.numpy as jnp

from nanocode import per_device, runtime
from nanocode.cpu_matmul import row_major


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


CE_IMPLS = ("auto", "xla", "pallas", "chunked")
# "chunked": rows per chunk. The head's forward + backward on the 2-core CPU (bf16 inputs, vocab 32768): 868-878
# ms in 512-row chunks against 950-981 over the whole array, the fastest of 64 to 2048 rows (2026-11-22,
# training/LOG.md): dL/dh's matmul reads the chunk's gradient while it is still in cache.
CHUNK_ROWS = 512


def _ce_impl(impl: str, N: int, V: int, cap, dtype) -> str:
    """"auto": the Pallas kernels (training/ce_pallas.py) on NVIDIA GPUs where they run on each device's
    own rows and the logits tile into their blocks; on one CPU device with bf16 matmul inputs, "chunked";
    else XLA's fusions over the whole [N, V] ("xla")."""
    if impl not in CE_IMPLS:
        raise ValueError(f"ce_impl must be one of {', '.join(CE_IMPLS)}, got {impl!r}")
    if impl != "auto":
        return impl
    if runtime.backend() == "cpu":
        single = jax.device_count() == 1 and N % CHUNK_ROWS == 0
        return "chunked" if single and dtype == jnp.bfloat16 else "xla"
    if cap is None or not per_device.cuda_gpu() or not per_device.kernels_usable():
        return "xla"
    from training import ce_pallas
    mesh = per_device.context_mesh()
    n = mesh.size if mesh is not None and N % mesh.size == 0 else 1
    return "pallas" if ce_pallas.tiles(N // n, V) else "xla"


@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def head_cross_entropy(h_NxC, w_CxV, targets_N, vocab_size: int, cap: float | None, impl: str = "auto",
                       logits_dtype=None):
    """Per-token NLL (fp32 nats) of `targets` under logits `cap * tanh((h @ w)[:, :vocab_size] / cap)`.

    h and w in the matmul dtype; the matmul writes the logits in `logits_dtype` (None: h's dtype), the
    compute dtype: bf16 on GPU, as nanochat's, fp32 on CPU (also where bf16 inputs feed the CPU's bf16
    dots); the soft cap, softmax and loss are computed in fp32. Matches `model.logits` + softmax cross
    entropy (tests/test_pretrain_step.py checks values and gradients). impl: CE_IMPLS."""
    return _fwd(h_NxC, w_CxV, targets_N, vocab_size, cap, impl, logits_dtype)[0]


def _xla_ce(logits_NxV, targets_N, vocab_size, cap, d_dtype):
    """(NLL [N], dNLL/dlogits [N, V] in d_dtype) by XLA's fusions."""
    V = logits_NxV.shape[-1]
    valid_V = jnp.arange(V) < vocab_size
    z_NxV = _softcap(logits_NxV.astype(jnp.float32), cap)
    lse_N = _lse(z_NxV, cap, valid_V)
    target_N = jnp.take_along_axis(z_NxV, targets_N[:, None], axis=-1)[:, 0]
    # dNLL/dlogits = (softmax(z) - onehot(target)) * dz/dlogits, with dz/dlogits = 1 - tanh^2.
    onehot_NxV = targets_N[:, None] == jnp.arange(V, dtype=targets_N.dtype)
    d_NxV = jnp.where(valid_V, jnp.exp(z_NxV - lse_N[:, None]), 0.0) - onehot_NxV
    if cap is not None:
        d_NxV = d_NxV * (1 - jnp.square(z_NxV / cap))
    return lse_N - target_N, d_NxV.astype(d_dtype)


def _fwd(h_NxC, w_CxV, targets_N, vocab_size, cap, impl, logits_dtype):
    N, V = h_NxC.shape[0], w_CxV.shape[1]
    out_dtype = logits_dtype or h_NxC.dtype
    impl = _ce_impl(impl, N, V, cap, h_NxC.dtype)
    if impl == "chunked":
        if N % CHUNK_ROWS:
            raise ValueError(f"ce_impl 'chunked' takes a multiple of {CHUNK_ROWS} tokens, got {N}")
        # One CPU, bf16 matmuls: CHUNK_ROWS rows at a time: the matmul, the two passes and dL/dh's matmul
        # on the chunk's gradient while it is recent; only dL/dlogits (bf16) is kept, for dL/dw.
        w_VxC = row_major(w_CxV.T)

        def chunk(h_RxC, targets_R):
            logits_RxV = jnp.matmul(h_RxC, w_CxV, preferred_element_type=out_dtype)
            nll_R, d_RxV = _xla_ce(logits_RxV, targets_R, vocab_size, cap, h_NxC.dtype)
            return nll_R, d_RxV, jnp.matmul(d_RxV, w_VxC, preferred_element_type=jnp.float32)
        nll, d, dh = jax.lax.map(lambda a: chunk(*a), (h_NxC.reshape(-1, CHUNK_ROWS, h_NxC.shape[1]),
                                                      targets_N.reshape(-1, CHUNK_ROWS)))
        return nll.reshape(N), (h_NxC, w_CxV, d.reshape(N, V), dh.reshape(N, -1))
    # An optimization barrier keeps the matmul a plain cuBLAS GEMM: without it XLA fused the soft cap's
    # tanh into a Triton GEMM that took 8.2 ms at depth 12 (cuBLAS: 4.1 ms, H200, 2026-11-22).
    logits_NxV = jax.lax.optimization_barrier(jnp.matmul(h_NxC, w_CxV, preferred_element_type=out_dtype))
    if impl == "pallas":
        from training import ce_pallas
        target_N = jnp.take_along_axis(logits_NxV, targets_N[:, None], axis=-1)[:, 0].astype(jnp.float32)
        lse_N = ce_pallas.softcap_lse(logits_NxV, vocab_size, cap)
        d_NxV = ce_pallas.softcap_ce_grad(logits_NxV, lse_N, targets_N, vocab_size, cap, h_NxC.dtype)
        return lse_N - _softcap(target_N, cap), (h_NxC, w_CxV, d_NxV, None)
    nll_N, d_NxV = _xla_ce(logits_NxV, targets_N, vocab_size, cap, h_NxC.dtype)
    return nll_N, (h_NxC, w_CxV, d_NxV, None)


def _bwd(vocab_size, cap, impl, logits_dtype, saved, g_N):
    h_NxC, w_CxV, d_NxV, dh_NxC = saved
    g_Nx1 = g_N[:, None]
    if dh_NxC is None:
        # row_major: on CPU a row-major copy of the transposed operand, for XLA's fast bf16 dots
        dh_NxC = jnp.matmul(d_NxV, row_major(w_CxV.T), preferred_element_type=jnp.float32)
    dh_NxC = (dh_NxC * g_Nx1).astype(h_NxC.dtype)
    gh_NxC = (h_NxC.astype(jnp.float32) * g_Nx1).astype(h_NxC.dtype)
    dw_CxV = jnp.matmul(row_major(gh_NxC.T), d_NxV, preferred_element_type=jnp.float32).astype(w_CxV.dtype)
    return dh_NxC, dw_CxV, None


head_cross_entropy.defvjp(_fwd, _bwd)


def _positions(model, ids_BxT):
    B, T = ids_BxT.shape
    if T > model.config.seq_len:
        raise ValueError(f"sequence of {T} tokens is longer than the model's context ({model.config.seq_len})")
    return jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))


def token_losses(model, ids_BxT, targets_BxT, remat: str = "none", ce_impl: str = "auto"):
    """Per-token NLL [B, T] (fp32 nats) of `targets` after `ids`, differentiable (training).
    ce_impl: how the cross entropy's passes run (CE_IMPLS, see _ce_impl)."""
    B, T = ids_BxT.shape
    h_BxTxC, _ = model.hidden(ids_BxT, _positions(model, ids_BxT), remat=remat)
    mm = model.matmul_dtype or model.dtype
    h_NxC = h_BxTxC.reshape(B * T, -1).astype(mm)
    nll_N = head_cross_entropy(h_NxC, model.lm_head[...].astype(mm), targets_BxT.reshape(-1),
                               model.config.vocab_size, model.config.softcap, ce_impl, jnp.dtype(model.dtype))
    return nll_N.reshape(B, T)


def token_losses_eval(model, ids_BxT, targets_BxT):
    """Per-token NLL [B, T] for evaluation: the model's own logits, no gradient bookkeeping."""
    h_BxTxC, _ = model.hidden(ids_BxT, _positions(model, ids_BxT))
    logits_BxTxV = model.logits(h_BxTxC)
    lse_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
    return lse_BxT - jnp.take_along_axis(logits_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
