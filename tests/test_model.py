"""The GPT: config derivation and validation, causality, the KV-cache path against the full forward, and
every fast op of the training forward (nanocode/ops.py) against the plain reference it replaces."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanocode import ops
from nanocode.model import GPT, ConfigError, ModelConfig, forward, init_cache, rms_norm, rotary, split_heads


@functools.cache
def random_model(config: ModelConfig, seed: int = 0, scale: float = 0.3) -> GPT:
    """A GPT with every parameter random (the real init zeroes the output projections, which would
    make attention invisible in the logits). Built abstractly and filled by one compiled function:
    eager initialisation compiles every op separately, which dominated these tests' time."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0))))
    shapes = [x.shape for x in jax.tree.leaves(state)]

    @jax.jit
    def fill(key):
        keys = jax.random.split(key, len(shapes))
        return [scale * jax.random.normal(k, shape, jnp.float32) for k, shape in zip(keys, shapes)]
    state = jax.tree.unflatten(jax.tree.structure(state), fill(jax.random.key(seed)))
    return nnx.merge(graphdef, state)


def jitted(model: GPT):
    """(full forward, cached step) of a model, compiled: eager op-by-op dispatch is slow on CPU."""
    graphdef, state = nnx.split(model)
    full = jax.jit(lambda ids: forward(graphdef, state, ids))

    @jax.jit
    def step(ids, pos, cache, start):
        m = nnx.merge(graphdef, state)
        h, cache = m.hidden(ids, pos, cache, start)
        return m.logits(h), cache
    return full, step


@pytest.mark.parametrize("depth,width,head_dim,n_head", [
    (1, 64, 32, 2), (2, 128, 64, 2), (3, 192, 64, 3), (4, 256, 128, 2), (6, 384, 128, 3),
    (12, 768, 128, 6), (20, 1280, 128, 10)])
def test_config_derives_width_and_heads(depth, width, head_dim, n_head):
    c = ModelConfig(depth=depth, vocab_size=1000)
    assert (c.width, c.head_dim_, c.n_head, c.n_kv_head) == (width, head_dim, n_head, n_head)
    assert c.padded_vocab == 1024 and c.padded_vocab % 128 == 0


def test_config_gqa_and_roundtrip():
    c = ModelConfig(depth=4, vocab_size=300, seq_len=64, head_dim=32, gqa_ratio=4, softcap=None)
    assert (c.n_head, c.n_kv_head) == (8, 2)
    assert ModelConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=0, vocab_size=10), "depth must be a positive integer"),
    (dict(depth=2, vocab_size=10, seq_len=-1), "seq_len must be a positive integer"),
    (dict(depth=6, vocab_size=10, gqa_ratio=2), "gqa_ratio 2 does not divide the 3 query heads"),
    (dict(depth=2, vocab_size=10, head_dim=48), "head_dim 48 does not divide the width 128"),
    (dict(depth=2, vocab_size=10, softcap=-1.0), "softcap must be a positive number"),
])
def test_config_errors_say_what_is_wrong(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_config_from_dict_errors():
    with pytest.raises(ConfigError, match="unknown model config keys \\['n_layer'\\]"):
        ModelConfig.from_dict({"depth": 2, "vocab_size": 10, "n_layer": 3})
    with pytest.raises(ConfigError, match="lacks the required keys \\['vocab_size'\\]"):
        ModelConfig.from_dict({"depth": 2})


def test_forward_shapes_dtype_and_causality():
    config = ModelConfig(depth=2, vocab_size=300, seq_len=32)
    model = random_model(config)
    full, _ = jitted(model)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 300, (2, 12)), jnp.int32)
    logits = full(ids)
    assert logits.shape == (2, 12, 300) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(logits) <= config.softcap))
    # Changing token 8 must leave the logits of positions 0..7 untouched, and change position 8's.
    changed = full(ids.at[:, 8].set((ids[:, 8] + 1) % 300))
    np.testing.assert_allclose(changed[:, :8], logits[:, :8], atol=1e-5)
    assert not np.allclose(changed[:, 8], logits[:, 8], atol=1e-3)
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(np.zeros((1, 33), np.int32))


def test_functional_forward_matches_module_and_has_gradients():
    config = ModelConfig(depth=2, vocab_size=300, seq_len=32)
    model = random_model(config)
    graphdef, params = nnx.split(model, nnx.Param)
    ids = jnp.asarray(np.random.default_rng(1).integers(0, 300, (2, 10)), jnp.int32)
    logits = jax.jit(forward, static_argnums=0)(graphdef, params, ids)
    np.testing.assert_allclose(logits, jitted(model)[0](ids), atol=1e-5)

    def loss(p):
        lp = jax.nn.log_softmax(forward(graphdef, p, ids[:, :-1]))
        return -jnp.mean(jnp.take_along_axis(lp, ids[:, 1:, None], axis=-1))
    grads = jax.jit(jax.grad(loss))(params)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(n) and n > 0 for n in norms)


def test_kv_cache_prefill_and_steps_match_full_forward():
    # GQA here (2 query heads per KV head); the sampler tests run plain multi-head attention.
    config = ModelConfig(depth=2, vocab_size=300, seq_len=64, head_dim=32, gqa_ratio=2)
    model = random_model(config, seed=2)
    full_fn, step = jitted(model)
    B, T = 2, 20
    ids = np.random.default_rng(2).integers(0, 300, (B, T)).astype(np.int32)  # host arrays: no eager ops
    full = np.asarray(full_fn(ids))
    # Prefill the first 7 tokens, then feed one token at a time into a 32-slot cache.
    cache = init_cache(config, B, 32)
    logits, cache = step(ids[:, :7], np.tile(np.arange(7), (B, 1)), cache, np.zeros(B, np.int32))
    outs = [logits]
    for t in range(7, T):
        logits, cache = step(ids[:, t:t + 1], np.full((B, 1), t), cache, np.full((B,), t))
        outs.append(logits)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, atol=1e-4)
    # Rows at different positions: row 1's prompt is 3 tokens shorter (padded with garbage, which the
    # decode steps overwrite before any query can see it).
    cache = init_cache(config, B, 32)
    padded = ids[:, :9].copy()
    padded[1, 6:] = 299
    logits, cache = step(padded, np.tile(np.arange(9), (B, 1)), cache, np.zeros(B, np.int32))
    np.testing.assert_allclose(logits[1, 5], full[1, 5], atol=1e-4)
    pos = np.array([9, 6])
    for _ in range(5):
        token = ids[np.arange(B), pos][:, None]
        logits, cache = step(token, pos[:, None], cache, pos)
        np.testing.assert_allclose(logits[:, 0], full[np.arange(B), pos], atol=1e-4)
        pos = pos + 1


def reference_forward(model: GPT, ids_BxT):
    """The oracle: the forward in plain JAX ops (fp32 residual stream, every norm and the q/k/v split as
    written in the model's rms_norm and rotary), differentiated by JAX's autodiff. Reads only the weights."""
    c, dt = model.config, model.dtype
    B, T = ids_BxT.shape
    N, K, H = c.n_head, c.n_kv_head, c.head_dim_
    pos_BxT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    x = rms_norm(model.wte[...][ids_BxT].astype(jnp.float32))
    for block in model.blocks:
        qkv = rms_norm(x).astype(dt) @ block.attn.c_qkv[...].astype(dt)
        q = rms_norm(rotary(qkv[..., :N * H].reshape(B, T, N, H), pos_BxT, c.rope_base))
        k = rms_norm(rotary(qkv[..., N * H:(N + K) * H].reshape(B, T, K, H), pos_BxT, c.rope_base))
        v = qkv[..., (N + K) * H:].reshape(B, T, K, H)
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(B, T, N * H)
        x = x + y @ block.attn.c_proj[...].astype(dt)
        h = jnp.square(jax.nn.relu(rms_norm(x).astype(dt) @ block.mlp.c_fc[...].astype(dt)))
        x = x + h @ block.mlp.c_proj[...].astype(dt)
    h = rms_norm(x).astype(dt)
    logits = jnp.matmul(h, model.lm_head[...].astype(dt), preferred_element_type=jnp.float32)[..., :c.vocab_size]
    return c.softcap * jnp.tanh(logits / c.softcap)


def _with_settings(model: GPT, **kwargs) -> GPT:
    """The same weights under other runtime settings (dtype, residual_dtype, matmul_dtype)."""
    graphdef = nnx.split(nnx.eval_shape(lambda: GPT(model.config, rngs=nnx.Rngs(0), **kwargs)))[0]
    return nnx.merge(graphdef, nnx.state(model))


def _residual_adds(fn, *args, dtype: str, shape) -> int:
    """How many adds on [B, T, C] arrays of `dtype` the traced program does (the residual stream's)."""
    text = str(jax.make_jaxpr(fn)(*args))
    return len(re.findall(rf":{dtype}\[{','.join(map(str, shape))}\] = add ", text))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])  # bf16: the GPU compute dtype, forced on CPU
def test_residual_dtype_default_matches_the_reference_and_bf16_stays_close(dtype):
    config = ModelConfig(depth=2, vocab_size=300, seq_len=32, head_dim=32, gqa_ratio=2)
    base = random_model(config, seed=3)
    ids = jnp.asarray(np.random.default_rng(3).integers(0, 300, (2, 12)), jnp.int32)
    default, low = _with_settings(base, dtype=dtype), _with_settings(base, dtype=dtype, residual_dtype=jnp.bfloat16)
    assert default.residual_dtype == jnp.float32 and low.residual_dtype == jnp.bfloat16
    run = jax.jit(lambda m, ids: m(ids))
    logits = run(default, ids)
    # The default path (fp32 residual, the fast ops) computes the reference's function: to fp32 rounding
    # (the flip form of RoPE, which the default is on CPU, is fused differently by XLA), in bf16 within a
    # few bf16 steps of a logit.
    reference = jax.jit(reference_forward)(default, ids)
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(logits, reference, rtol=0, atol=tol * config.softcap)
    # A bf16 residual stream: the adds really run in bf16, and the logits stay within bf16 rounding.
    shape = (2, 12, config.width)
    assert _residual_adds(lambda ids: default(ids), ids, dtype="bf16", shape=shape) == 0
    assert _residual_adds(lambda ids: default(ids), ids, dtype="f32", shape=shape) >= 2 * config.depth
    assert _residual_adds(lambda ids: low(ids), ids, dtype="bf16", shape=shape) >= 2 * config.depth
    low_logits = run(low, ids)
    assert low_logits.dtype == jnp.float32 and not np.array_equal(low_logits, logits)
    err = np.abs(np.asarray(low_logits) - np.asarray(logits))
    assert err.mean() < 0.02 * float(np.abs(logits).mean()) and err.max() < 0.05 * config.softcap


def _value_and_grads(model: GPT, fn, ids, weights):
    """sum(fn(model, ids) * weights) and its gradient for every parameter (every logit matters)."""
    graphdef, params = nnx.split(model)
    return jax.jit(jax.value_and_grad(lambda p: jnp.sum(fn(nnx.merge(graphdef, p), ids) * weights)))(params)


@pytest.mark.parametrize("form", ops.QKV_FORMS)
def test_every_qkv_form_trains_the_reference_model(form):
    # The model's training forward and backward (hand-written norm and q/k/v backwards, each form of
    # ops.qkv_heads) against the reference forward through JAX's autodiff, in fp32.
    config = ModelConfig(depth=2, vocab_size=300, seq_len=32, head_dim=32, gqa_ratio=2)
    model = _with_settings(random_model(config, seed=8), dtype=jnp.float32)
    ids = jnp.asarray(np.random.default_rng(8).integers(0, 300, (2, 12)), jnp.int32)
    weights = jax.random.normal(jax.random.key(9), (2, 12, 300))
    ref_value, ref_grads = _value_and_grads(model, reference_forward, ids, weights)
    with ops.qkv_form(form):
        value, grads = _value_and_grads(model, GPT.__call__, ids, weights)
    # The loss is sum(w * logits) over 7200 terms that cancel (~14 against a sum of |w * logit| of ~1.5e4),
    # so a tolerance relative to it is unsound (fp32 sums in another order moved it by 1.3e-5 relative):
    # logits within tol of the reference's (the test above) put it within tol * sum(|w|) of the reference's.
    tol = 1e-6 * config.softcap
    np.testing.assert_allclose(value, ref_value, rtol=0, atol=tol * float(jnp.abs(weights).sum()))
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        assert float(jnp.abs(want).max()) > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_every_qkv_form_matches_split_heads_and_its_autodiff(dtype):
    # ops.qkv_heads in each form against split_heads (the KV-cache path's ops) and JAX's autodiff of it,
    # with grouped-query attention (N != K) and positions that do not start at 0.
    B, T, N, K, H, base = 2, 12, 4, 2, 32, 10000.0
    qkv = (3 * jax.random.normal(jax.random.key(6), (B, T, (N + 2 * K) * H))).astype(dtype)
    pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32) + 5, (B, T))
    cts = tuple(jax.random.normal(jax.random.key(7 + i), (B, T, m, H)).astype(dtype) for i, m in enumerate((N, K, K)))

    def outputs(heads, qkv, pos, cts):
        out, vjp = jax.vjp(lambda x: heads(x, pos), qkv)
        return [a.astype(jnp.float32) for a in (*out, vjp(cts)[0])]
    ref = [np.asarray(a) for a in jax.jit(functools.partial(
        outputs, lambda x, p: split_heads(x, p, N, K, H, base)))(qkv, pos, cts)]
    for form in ops.QKV_FORMS:
        got = [np.asarray(a) for a in jax.jit(functools.partial(
            outputs, lambda x, p, form=form: ops.qkv_heads(x, p, N, K, H, base, form)))(qkv, pos, cts)]
        assert [a.shape for a in got] == [(B, T, N, H), (B, T, K, H), (B, T, K, H), (B, T, (N + 2 * K) * H)]
        scale = [float(np.abs(r).max()) for r in ref]
        # The forward: fp32 to rounding, bf16 within one bf16 step of each value; v is passed through.
        tol = 1e-6 if dtype == jnp.float32 else 2.0 ** -7
        for a, r, m in zip(got[:2], ref[:2], scale):
            np.testing.assert_allclose(a, r, rtol=0, atol=tol * m, err_msg=form)
        np.testing.assert_array_equal(got[2], ref[2])
        # The hand-written backward against JAX's autodiff of split_heads.
        tol = 1e-5 if dtype == jnp.float32 else 2e-2
        np.testing.assert_allclose(got[3], ref[3], rtol=0, atol=tol * scale[3], err_msg=form)


def test_norm_to_is_rms_norm_with_its_gradient():
    x = 3 * jax.random.normal(jax.random.key(10), (4, 6, 64))
    g = jax.random.normal(jax.random.key(11), (4, 6, 64))
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):  # bf16: its backward reads the rounded y
        y, vjp = jax.vjp(lambda x: ops.norm_to(x, dtype), x)
        want, want_vjp = jax.vjp(lambda x: rms_norm(x).astype(dtype), x)
        np.testing.assert_array_equal(y, want)  # rms_norm's own ops
        dx, want_dx = vjp(g.astype(dtype))[0], want_vjp(g.astype(dtype))[0]
        assert dx.dtype == x.dtype
        np.testing.assert_allclose(dx, want_dx, rtol=0, atol=tol * float(jnp.abs(want_dx).max()))


def test_qkv_form_is_checked_and_scoped():
    with pytest.raises(ValueError, match="qkv form must be one of auto, flip, pallas, got 'split'"):
        ops.resolve_form("split")
    with pytest.raises(ValueError, match="qkv form must be one of auto, flip, pallas, got 'rotate'"):
        with ops.qkv_form("rotate"):
            pass
    assert ops.resolve_form() == "flip"  # "auto" on CPU
    with ops.qkv_form("pallas"):
        assert ops.resolve_form() == "pallas" and ops.resolve_form("flip") == "flip"  # an explicit form wins
    assert ops.resolve_form() == "flip"
