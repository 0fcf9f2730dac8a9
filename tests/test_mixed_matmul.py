"""bf16 training matmuls on CPU (nanocode/cpu_matmul.py, runtime.train_matmul_dtype): the values and gradients
are those of the bf16-rounded operands multiplied exactly (fp32 accumulation)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nanocode import runtime
from nanocode.cpu_matmul import causal_attention, mixed_matmul, row_major
from training.config import TrainConfig, TrainConfigError

BF = jnp.bfloat16


def _rounded(x):
    return x.astype(BF).astype(jnp.float32)


def test_mixed_matmul_values_and_gradients_are_the_rounded_operands_products():
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (2, 8, 16), jnp.float32)
    w = jax.random.normal(k[1], (16, 24), jnp.float32)
    g = jax.random.normal(k[2], (2, 8, 24), jnp.float32)
    y, vjp = jax.vjp(lambda x, w: mixed_matmul(x, w, jnp.dtype(BF)), x, w)
    dx, dw = jax.jit(vjp)(g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.float32
    hi = jax.lax.Precision.HIGHEST
    np.testing.assert_allclose(y, jnp.matmul(_rounded(x), _rounded(w), precision=hi), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, jnp.matmul(_rounded(g), _rounded(w).T, precision=hi), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, jnp.einsum("bti,bto->io", _rounded(x), _rounded(g), precision=hi),
                               rtol=1e-5, atol=1e-5)
    # and close to the fp32 product: bf16 keeps ~3 significant digits
    np.testing.assert_allclose(y, x @ w, rtol=0, atol=0.05 * float(jnp.max(jnp.abs(x @ w))))


def test_row_major_of_a_transpose_is_the_transpose():
    x = jnp.arange(12, dtype=jnp.float32).reshape(3, 4).astype(BF)
    np.testing.assert_array_equal(jax.jit(lambda x: row_major(x.T))(x), x.T)


def test_train_matmul_dtype_choice_and_errors(monkeypatch):
    monkeypatch.delenv("NANOCODE_CPU_MATMUL", raising=False)
    want = BF if runtime.cpu_has_bf16_dot() else jnp.float32
    assert runtime.train_matmul_dtype("cpu") == jnp.dtype(want)
    assert runtime.train_matmul_dtype("gpu") == jnp.dtype(BF)
    monkeypatch.setenv("NANOCODE_CPU_MATMUL", "float32")
    assert runtime.train_matmul_dtype("cpu") == jnp.dtype(jnp.float32)
    monkeypatch.setenv("NANOCODE_CPU_MATMUL", "fp8")
    with pytest.raises(ValueError, match="NANOCODE_CPU_MATMUL='fp8': use 'float32' or 'bfloat16'"):
        runtime.train_matmul_dtype("cpu")
    assert TrainConfig(matmul_dtype="float32").matmul_jnp_dtype() == jnp.dtype(jnp.float32)
    with pytest.raises(TrainConfigError, match="--matmul-dtype must be auto, bfloat16 or float32"):
        TrainConfig(matmul_dtype="half")


def test_cpu_attention_matches_xla_attention_to_bf16_rounding():
    k = jax.random.split(jax.random.key(1), 4)
    q, kk, v, g = (jax.random.normal(x, (2, 64, 2, 16), jnp.float32) for x in k)

    def ref(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)

    def mine(q, k, v):
        return causal_attention(q, k, v, jnp.dtype(BF))
    np.testing.assert_allclose(jax.jit(mine)(q, kk, v), ref(q, kk, v), atol=0.02)
    grads = [jax.jit(jax.grad(lambda *a, f=f: jnp.sum(f(*a) * g), argnums=(0, 1, 2)))(q, kk, v) for f in (mine, ref)]
    for got, want in zip(*grads):
        scale = float(jnp.max(jnp.abs(want)))
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=0.02 * scale)
    # causal: the first position sees only itself, so its output is its own value (to bf16 rounding)
    np.testing.assert_allclose(mine(q, kk, v)[:, 0], v[:, 0], atol=0.02)
