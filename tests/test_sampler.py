"""The KV-cache sampler against plain full forwards on random tiny models."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nanocode import decode_layout
from nanocode.model import ModelConfig
from nanocode.sampler import PromptTooLongError, Sampler, sample_token
from test_model import jitted, random_model

CONFIG = ModelConfig(depth=2, vocab_size=300, seq_len=96, head_dim=32)  # test_model covers GQA


@pytest.fixture(scope="module")
def model():
    return random_model(CONFIG, seed=7)


@pytest.fixture(scope="module")
def sampler(model):
    return Sampler(model, chunk=4)


def argmax_loop(model, prompt, n):
    """The reference: a full forward over the whole sequence for every new token (padded to the context,
    which causal attention ignores, so that it compiles once)."""
    S = model.config.seq_len
    fwd = jitted(model)[0]
    ids, out = list(prompt), []
    for _ in range(n):
        padded = np.array([ids + [0] * (S - len(ids))], np.int32)
        out.append(int(np.argmax(np.asarray(fwd(padded))[0, len(ids) - 1])))  # on host: no eager ops
        ids.append(out[-1])
    return out


PROMPTS = [[1], [5, 17, 42, 99, 3, 250, 7], list(range(3, 40))]  # buckets 16, 16, 64


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_argmax_over_full_forwards(model, sampler, prompt):
    sampler.reset()
    ref = argmax_loop(model, prompt, 24)
    assert sampler.generate(prompt, 24) == ref
    assert list(sampler.stream(prompt, 24)) == ref
    assert list(sampler.stream(prompt, 24, chunk=1)) == ref


def test_batch_of_different_lengths_equals_one_by_one(sampler):
    sampler.reset()
    singles = [sampler.generate(p, 12) for p in PROMPTS]
    assert sampler.generate_batch(PROMPTS, 12) == singles


def test_fixed_batch_shapes_give_the_same_tokens_from_fewer_programs(model, sampler):
    """The GPU's batch policy (one cache length, prompts padded to >= 256), forced on CPU: same greedy ids,
    and batches of other prompt lengths and budgets reuse one decode program."""
    from nanocode.sampler import _programs
    fixed = Sampler(model, fixed_batch_shapes=True)
    sampler.reset()
    singles = [sampler.generate(p, 12) for p in PROMPTS]
    assert fixed.generate_batch(PROMPTS, 12) == singles
    decode = _programs()[1]
    before = decode._cache_size()
    assert fixed.generate_batch([PROMPTS[0], PROMPTS[1], PROMPTS[0]], 30)[1] == argmax_loop(model, PROMPTS[1], 30)
    assert fixed.generate_batch([list(range(3, 80)), PROMPTS[2], [9]], 5)[0] == argmax_loop(model, range(3, 80), 5)
    assert decode._cache_size() == before


def test_stop_tokens_stop_and_are_included(model, sampler):
    prompt = PROMPTS[1]
    ref = argmax_loop(model, prompt, 16)
    stop_at = next(i for i, t in enumerate(ref) if i >= 2 and t not in ref[:i])
    assert sampler.generate(prompt, 16, stop=[ref[stop_at], 299]) == ref[:stop_at + 1]
    assert list(sampler.stream(prompt, 16, stop=[ref[stop_at]])) == ref[:stop_at + 1]
    assert sampler.generate(prompt, 16, stop=[ref[0]]) == ref[:1]  # the very first token can stop it
    # In a batch, a stopped row ends while the others go on (the same shapes as the batch test above).
    rows = sampler.generate_batch([prompt, PROMPTS[2], PROMPTS[0]], 12, stop=[ref[stop_at]])
    assert rows[0] == ref[:stop_at + 1]
    for row, p in zip(rows[1:], [PROMPTS[2], PROMPTS[0]]):
        full = argmax_loop(model, p, 12)
        cut = full.index(ref[stop_at]) + 1 if ref[stop_at] in full else 12
        assert row == full[:cut]


def test_prefix_reuse_gives_the_same_tokens(model, sampler):
    prompt = PROMPTS[1]
    ref = argmax_loop(model, prompt, 30)
    sampler.reset()
    first = sampler.generate(prompt, 10)
    assert first == ref[:10]
    # The agent's pattern: the next prompt extends the previous prompt + output.
    assert sampler._cached_tokens == prompt + first[:-1]
    assert sampler.generate(prompt + first, 10) == ref[10:20]
    assert sampler._cached_tokens[:len(prompt) + 10] == prompt + first
    # Interrupted streaming keeps the cache consistent: stop after 5 ids, then continue from them.
    sampler.reset()
    got = []
    for t in sampler.stream(prompt, 30):
        got.append(t)
        if len(got) == 5:
            break
    assert got == ref[:5]
    assert sampler.generate(prompt + got, 25) == ref[5:30]
    # A prompt that diverges from the cache reuses only the common part.
    other = prompt[:3] + [11, 12]
    assert sampler.generate(other, 8) == argmax_loop(model, other, 8)


def test_context_limit(model, sampler):
    S = CONFIG.seq_len
    with pytest.raises(PromptTooLongError, match=f"prompt of {S} tokens does not fit the model's context of {S}"):
        sampler.generate([1] * S, 4)
    # A prompt one short of the context gets exactly one token; generation stops at the end of the cache.
    long = [int(t) for t in np.random.default_rng(0).integers(0, 300, S - 1)]
    assert sampler.generate(long, 10) == argmax_loop(model, long, 1)
    assert len(sampler.generate(long[:S - 5], 10)) == 5


def test_bad_arguments_are_refused(sampler):
    with pytest.raises(ValueError, match="empty prompt"):
        sampler.generate([], 4)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sampler.generate([1, 300], 4)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        sampler.generate([1], 0)
    with pytest.raises(ValueError, match="top_p must be in"):
        sampler.generate([1], 4, temperature=1.0, top_p=1.5)


def test_sampling_is_seeded_and_top_k_1_is_greedy(sampler):
    prompt = PROMPTS[1]
    greedy = sampler.generate(prompt, 12)
    a = sampler.generate(prompt, 12, temperature=1.0, seed=1)
    assert a == sampler.generate(prompt, 12, temperature=1.0, seed=1)
    assert a == list(sampler.stream(prompt, 12, temperature=1.0, seed=1))  # chunking does not change draws
    assert any(sampler.generate(prompt, 12, temperature=1.0, seed=s) != a for s in (2, 3))
    assert sampler.generate(prompt, 12, temperature=1.0, top_k=1, seed=4) == greedy


def test_sample_token_follows_the_distribution():
    """Temperature, top-k and top-p on a known distribution (one sampling call for 4000 rows)."""
    probs = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    logits = jnp.log(jnp.asarray(probs, jnp.float32))[None].repeat(4000, axis=0)
    key = jax.random.key(0)

    def freqs(temperature=1.0, top_k=None, top_p=None):
        ids = sample_token(logits, key, jnp.float32(temperature), jnp.float32(top_p or 1.0), greedy=False,
                           top_k=top_k, nucleus=top_p is not None)
        return np.bincount(np.asarray(ids), minlength=6) / len(ids)

    np.testing.assert_allclose(freqs(), probs, atol=0.03)
    hot = probs ** 0.5 / np.sum(probs ** 0.5)  # temperature 2 flattens: p^(1/T)
    np.testing.assert_allclose(freqs(temperature=2.0), hot, atol=0.03)
    k2 = freqs(top_k=2)
    assert k2[2:].sum() == 0 and abs(k2[0] - 0.4 / 0.65) < 0.03
    p = freqs(top_p=0.7)  # the smallest prefix reaching 0.7: 0.4 + 0.25 + 0.15
    assert p[3:].sum() == 0 and abs(p[0] - 0.4 / 0.8) < 0.03
    greedy = sample_token(logits[:2], key, jnp.float32(1.0), jnp.float32(1.0), greedy=True, top_k=None,
                          nucleus=False)
    assert greedy.tolist() == [0, 0]


def test_transposed_weights_and_unrolled_loop_give_the_same_tokens(model, monkeypatch):
    """The GPU sampler's weight layout (nanocode/decode_layout.py: [out, in], norm scales folded past the
    matmuls), run here on CPU, with 3 decode steps per loop iteration (steps past the chunk's budget must
    change nothing)."""
    assert not decode_layout.use_transposed("cpu") and decode_layout.use_transposed("gpu")
    monkeypatch.setattr(decode_layout, "use_transposed", lambda platform=None: True)
    sampler = Sampler(model, unroll=3, chunk=4)
    assert sampler.params["lm_head"].shape == (CONFIG.padded_vocab, CONFIG.width)
    assert sampler.params["blocks"][0]["mlp_fc"].shape == (CONFIG.mlp_ratio * CONFIG.width, CONFIG.width)
    ref = argmax_loop(model, PROMPTS[1], 16)
    assert sampler.generate(PROMPTS[1], 16) == ref
    assert list(sampler.stream(PROMPTS[1], 16)) == ref
    assert sampler.generate_batch(PROMPTS, 12) == [argmax_loop(model, p, 12) for p in PROMPTS]


def test_a_stream_grows_its_cache_and_gives_the_same_tokens():
    """Streaming starts with a cache of the prompt plus one chunk (a small cache makes each step cheaper)
    and doubles it when a chunk could run past it: the tokens stay those of full forwards."""
    model = random_model(ModelConfig(depth=1, vocab_size=300, seq_len=640, head_dim=32), seed=3)
    sampler = Sampler(model, chunk=8)
    prompt = [int(t) for t in np.random.default_rng(1).integers(0, 300, 230)]
    ref = argmax_loop(model, prompt, 40)
    assert list(sampler.stream(prompt, 40)) == ref
    assert sampler._cache[0][0].shape[2] == 512  # 230 + 8 fit 256 slots; by token ~20 it had to grow
    sampler.reset()
    assert sampler.generate(prompt, 40) == ref  # one call: the cache sized for all 40 from the start
    near_end = [int(t) for t in np.random.default_rng(2).integers(0, 300, 630)]
    sampler.reset()
    assert list(sampler.stream(near_end, 40)) == argmax_loop(model, near_end, 10)  # stops at the context end
