"""The cross entropy's Pallas kernels (training/ce_pallas.py, run by Pallas's interpreter on CPU) against
XLA's passes: the same per-token losses and the same gradients for h and the head."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training import ce_pallas, losses


def _inputs(N=32, C=16, V=1024, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    h = jax.random.normal(k[0], (N, C), jnp.float32)
    w = 2.0 * jax.random.normal(k[1], (C, V), jnp.float32)  # logits of a few units: the soft cap matters
    targets = jax.random.randint(k[2], (N,), 0, V - 5)
    return h, w, targets


@pytest.mark.parametrize("cap", [15.0, 5.0])
def test_pallas_cross_entropy_matches_xla_values_and_gradients(cap):
    h, w, targets = _inputs()
    vocab = w.shape[1] - 5  # padding columns in the head: never a token, no probability
    weights = jax.random.uniform(jax.random.key(3), (h.shape[0],))  # per-token incoming gradients g

    def loss(h, w, impl):
        return jnp.sum(weights * losses.head_cross_entropy(h, w, targets, vocab, cap, impl))
    got = jax.jit(jax.value_and_grad(lambda h, w: loss(h, w, "pallas"), argnums=(0, 1)))(h, w)
    want = jax.jit(jax.value_and_grad(lambda h, w: loss(h, w, "xla"), argnums=(0, 1)))(h, w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, r in zip(got[1], want[1]):
        assert float(jnp.max(jnp.abs(r))) > 1e-3
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-5 * float(jnp.max(jnp.abs(r))))
    # and XLA's passes against plain autodiff of the soft-capped log-softmax
    logits = cap * jnp.tanh((h @ w)[:, :vocab] / cap)
    nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    np.testing.assert_allclose(want[0], jnp.sum(weights * nll), rtol=1e-5)


def test_kernel_gradient_is_zero_past_the_vocabulary_and_sums_to_zero():
    h, w, targets = _inputs(V=1024)
    logits = h @ w
    lse = ce_pallas.softcap_lse(logits, 1000, 15.0)
    d = ce_pallas.softcap_ce_grad(logits, lse, targets, 1000, 15.0, jnp.float32)
    assert float(jnp.max(jnp.abs(d[:, 1000:]))) == 0.0
    # (softmax - onehot) sums to zero over a row; with dz/dlogits it does not, so check the softmax part
    t = jnp.tanh(logits[:, :1000] / 15.0)
    np.testing.assert_allclose(jnp.sum(d[:, :1000] / (1 - t * t), axis=-1), 0.0, atol=1e-5)


def test_ce_impl_choice_and_errors():
    # CPU: XLA's passes, over 128-row chunks where the matmuls take bf16 (one device)
    assert losses._ce_impl("auto", 65536, 32768, 15.0, jnp.float32) == "xla"
    assert losses._ce_impl("auto", 65536, 32768, 15.0, jnp.bfloat16) == "chunked"
    assert losses._ce_impl("auto", 65535, 32768, 15.0, jnp.bfloat16) == "xla"
    assert losses._ce_impl("pallas", 64, 1024, 15.0, jnp.bfloat16) == "pallas"
    assert ce_pallas.tiles(64, 1024) and not ce_pallas.tiles(60, 1024) and not ce_pallas.tiles(64, 1000)
    h, w, targets = _inputs()
    with pytest.raises(ValueError, match="ce_impl must be one of auto, xla, pallas, chunked, got 'cuda'"):
        losses.head_cross_entropy(h, w, targets, 1024, 15.0, "cuda")


def test_chunked_cross_entropy_matches_xla_in_bf16(monkeypatch):
    monkeypatch.setattr(losses, "CHUNK_ROWS", 128)
    # "chunked" (one CPU, bf16 matmuls): 128 rows at a time, dL/dh's matmul in the forward; the same
    # values and gradients as the whole-array passes
    h, w, targets = _inputs(N=256)
    h, w = h.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    weights = jax.random.uniform(jax.random.key(3), (h.shape[0],))

    def loss(h, w, impl):
        nll = losses.head_cross_entropy(h, w, targets, 1019, 15.0, impl, jnp.dtype(jnp.float32))
        return jnp.sum(weights * nll)
    got = jax.jit(jax.value_and_grad(lambda h, w: loss(h, w, "chunked"), argnums=(0, 1)))(h, w)
    want = jax.jit(jax.value_and_grad(lambda h, w: loss(h, w, "xla"), argnums=(0, 1)))(h, w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, r in zip(got[1], want[1]):
        g, r = g.astype(jnp.float32), r.astype(jnp.float32)
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-2 * float(jnp.max(jnp.abs(r))))
    with pytest.raises(ValueError, match="ce_impl 'chunked' takes a multiple of 128 tokens, got 32"):
        losses.head_cross_entropy(h[:32], w, targets[:32], 1019, 15.0, "chunked")
