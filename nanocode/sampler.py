"""The sampler: a preallocated KV cache, one compiled prefill, one compiled decode loop.

Shapes are static so nothing recompiles per prompt: the prompt is padded to a power-of-two bucket, the
cache to a power-of-two bucket of prompt + new tokens (capped at the context), and every row's position is
data. Decoding is a `lax.while_loop` on device that stops when every row has hit a stop token, the token
budget of the call, or the end of the cache; sampling settings are data too, except greedy-or-not and
top-k (static, because `lax.top_k` needs a static k). Following the gemma sampler, what the loop carries
is one small typed structure (`DecodeState`) and stop conditions are data, not Python control flow.

`generate` runs the whole budget in one device call; `stream` runs the same compiled loop in chunks of
`chunk` tokens and yields ids after each, so a UI sees text arrive and can stop between chunks.

Prefix caching (batch 1): the sampler remembers which tokens' keys/values sit in its cache; when a new
prompt extends them (the agent re-renders the conversation after a tool result), only the new suffix is
prefilled.
"""
import functools
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanocode import decode_layout, runtime
from nanocode.model import GPT, init_cache

PAD = -1            # what a finished row emits in the output buffer
_NO_STOP = -2       # fills the stop-id array to a fixed size (never equals a token id)
_MIN_PROMPT_BUCKET = 16
_MIN_CACHE_BUCKET = 256
_MIN_BATCH_PROMPT_BUCKET = 256  # with fixed batch shapes (below)


class PromptTooLongError(ValueError):
    pass


class DecodeState(NamedTuple):
    cache: list          # per layer (k [B, K, cache_len, H], v [B, K, H, cache_len]), see model.init_cache
    token_B: jax.Array   # the last sampled token of each row; its K/V is not in the cache yet
    pos_B: jax.Array     # that token's position (= the cache slot it will be written to)
    done_B: jax.Array    # row hit a stop token or the end of the cache
    count: jax.Array     # tokens sampled so far (all calls): the sampling key is fold_in(key, count)
    key: jax.Array


def _bucket(n: int, minimum: int, cap: int) -> int:
    return min(cap, max(minimum, 1 << max(0, n - 1).bit_length()))


def argmax(x_BxV):
    """First index of the maximum. jnp.argmax's variadic reduce is not vectorised on XLA:CPU (0.33 ms at
    vocab 32768 vs 0.07 ms for a max then a min, measured with dispatch); NaNs map to the last id."""
    V = x_BxV.shape[-1]
    top_Bx1 = jnp.max(x_BxV, axis=-1, keepdims=True)
    first_B = jnp.min(jnp.where(x_BxV == top_Bx1, jnp.arange(V, dtype=jnp.int32), V), axis=-1)
    return jnp.minimum(first_B, V - 1)


def sample_token(logits_BxV, key, temperature, top_p, *, greedy: bool, top_k: int | None, nucleus: bool):
    """Greedy argmax, or a sample at `temperature` from the top-k and/or (if `nucleus`) the top-p
    nucleus of the logits. temperature and top_p are data; the rest is static."""
    if greedy:
        return argmax(logits_BxV)
    logits_BxV = logits_BxV / temperature
    if top_k is None and not nucleus:
        cand_BxK, cand_ids_BxK = logits_BxV, None
    else:  # candidates sorted by logit, descending: the top k, or the whole vocabulary for top-p alone
        k = top_k if top_k is not None else logits_BxV.shape[-1]
        cand_BxK, cand_ids_BxK = jax.lax.top_k(logits_BxV, k)
    if nucleus:  # the nucleus: the smallest prefix whose probability reaches top_p (>= 1 token)
        probs_BxK = jax.nn.softmax(cand_BxK, axis=-1)
        mass_before_BxK = jnp.cumsum(probs_BxK, axis=-1) - probs_BxK
        cand_BxK = jnp.where(mass_before_BxK < top_p, cand_BxK, -jnp.inf)
    # Gumbel-max: argmax(logits + Gumbel noise) is a sample from softmax(logits).
    choice_B = argmax(cand_BxK + jax.random.gumbel(key, cand_BxK.shape, jnp.float32))
    if cand_ids_BxK is None:
        return choice_B
    return jnp.take_along_axis(cand_ids_BxK, choice_B[:, None], axis=-1)[:, 0].astype(jnp.int32)


def _is_stop(token_B, stop_ids):
    return jnp.any(token_B[:, None] == stop_ids[None, :], axis=-1)


def _prefill(graphdef, params, cache, ids_BxT, start_B, length_B, key, temperature, top_p, stop_ids,
             *, cache_len, greedy, top_k, nucleus):
    """Write the (padded) prompt tokens at slots start.. of each row, sample the first new token from the
    logits at each row's last real token (length-1). cache=None: start from an empty cache of cache_len
    slots, allocated here (one device call instead of 2 * depth allocations)."""
    model = nnx.merge(graphdef, params)
    B, T = ids_BxT.shape
    if cache is None:
        cache = init_cache(model.config, B, cache_len, model.dtype)
    pos_BxT = start_B[:, None] + jnp.arange(T, dtype=jnp.int32)[None, :]
    h_BxTxC, cache = model.hidden(ids_BxT, pos_BxT, cache, start_B)
    h_BxC = jnp.take_along_axis(h_BxTxC, (length_B - 1 - start_B)[:, None, None], axis=1)[:, 0]
    count = jnp.zeros((), jnp.int32)
    token_B = sample_token(model.logits(h_BxC, soft_cap=not greedy), jax.random.fold_in(key, count),
                           temperature, top_p, greedy=greedy, top_k=top_k, nucleus=nucleus)
    done_B = _is_stop(token_B, stop_ids) | (length_B >= cache_len - 1)
    return DecodeState(cache, token_B, length_B, done_B, count + 1, key)


def _decode(graphdef, params, state: DecodeState, limit, temperature, top_p, stop_ids,
            *, greedy, top_k, nucleus, unroll):
    """Sample up to `limit` more tokens per row; returns the new state, the tokens [B, cache_len] (PAD
    after a row finished) and how many steps ran. `unroll` steps run per loop iteration: steps past the
    limit recompute the current token at the same slot, which changes nothing, and are discarded."""
    model = nnx.merge(graphdef, params)
    B = state.token_B.shape[0]
    cache_len = state.cache[0][0].shape[2]

    def step(carry):
        s, out_BxL, n = carry
        h_Bx1xC, cache = model.hidden(s.token_B[:, None], s.pos_B[:, None], s.cache, s.pos_B)
        next_B = sample_token(model.logits(h_Bx1xC[:, 0], soft_cap=not greedy),
                              jax.random.fold_in(s.key, s.count), temperature, top_p,
                              greedy=greedy, top_k=top_k, nucleus=nucleus)
        active = n < limit
        advance_B = active & ~s.done_B
        next_B = jnp.where(advance_B, next_B, PAD)
        out_BxL = jax.lax.dynamic_update_slice(out_BxL, next_B[:, None], (0, n))
        token_B = jnp.where(advance_B, next_B, s.token_B)
        pos_B = jnp.where(advance_B, s.pos_B + 1, s.pos_B)
        done_B = s.done_B | (advance_B & (_is_stop(next_B, stop_ids) | (pos_B >= cache_len - 1)))
        s = DecodeState(cache, token_B, pos_B, done_B, s.count + active, s.key)
        return s, out_BxL, n + active

    def body(carry):
        for _ in range(unroll):
            carry = step(carry)
        return carry

    def cond(carry):
        s, _, n = carry
        return (n < limit) & ~jnp.all(s.done_B)

    out_BxL = jnp.full((B, cache_len), PAD, jnp.int32)
    return jax.lax.while_loop(cond, body, (state, out_BxL, jnp.zeros((), jnp.int32)))


def _grow(cache: list, length: int) -> list:
    """The cache with `length` slots; the old slots keep their place (keys [B, K, S, H], values [B, K, H, S])."""
    grow = length - cache[0][0].shape[2]
    return [(jnp.pad(k, ((0, 0), (0, 0), (0, grow), (0, 0))), jnp.pad(v, ((0, 0), (0, 0), (0, 0), (0, grow))))
            for k, v in cache]


@functools.cache
def _programs() -> tuple:
    """The jitted prefill and decode, shared by all Samplers (XLA's cache is per jit object)."""
    prefill = jax.jit(_prefill, static_argnames=("graphdef", "cache_len", "greedy", "top_k", "nucleus"),
                      donate_argnames=("cache",))
    decode = jax.jit(_decode, static_argnames=("graphdef", "greedy", "top_k", "nucleus", "unroll"),
                     donate_argnames=("state",))
    return prefill, decode


class Sampler:
    """Generate from a GPT with a KV cache. The parameters are snapshotted (cast to the compute dtype) at
    construction: build a new Sampler after the weights change."""

    def __init__(self, model: GPT, *, chunk: int = 16, unroll: int = 1, fixed_batch_shapes: bool | None = None):
        runtime.setup_jax()
        # Batched calls (RL rollouts, evals) on GPU: every cache is the whole context and prompts pad to at
        # least 256 tokens, so a run compiles one decode program per batch size and four prefills, not one of
        # each per (batch, prompt bucket, cache bucket). A depth-8 round of 256 rollouts on an H200 took 106.6 s
        # for 7 batches, while the GPU's work was a few seconds of it (training/LOG.md 2026-12-06). On CPU a
        # step's cost grows with the cache (6.2 -> 21.0 ms from 256 to 2048 slots), so there shapes follow
        # the call.
        self.fixed_batch_shapes = (decode_layout.use_transposed() if fixed_batch_shapes is None
                                   else fixed_batch_shapes)
        self.config = model.config
        self.dtype = model.dtype
        # The inference copy of the weights, cast once to the compute dtype (on GPU each decode step then
        # reads bf16, half the bytes, with no cast kernels); on GPU transposed (nanocode/decode_layout.py).
        if decode_layout.use_transposed():
            self.graphdef, self.params = nnx.split(decode_layout.TransposedGPT(model))
        else:
            params = jax.tree.map(lambda p: p.astype(model.dtype), nnx.to_pure_dict(nnx.state(model, nnx.Param)))
            infer = nnx.eval_shape(lambda: GPT(model.config, rngs=nnx.Rngs(0), dtype=model.dtype))
            self.graphdef, self.params = nnx.split(infer)
            nnx.replace_by_pure_dict(self.params, params)
        self.chunk = chunk
        self.unroll = unroll
        self._prefill, self._decode = _programs()
        self._cache = None                     # batch-1 cache kept for prefix reuse
        self._cached_tokens: list[int] = []    # tokens whose K/V sit in self._cache, slots 0..n-1

    # --- public API ---------------------------------------------------------------------------------

    def generate(self, prompt: Sequence[int], max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, stop: Sequence[int] = (),
                 seed: int = 0) -> list[int]:
        """New ids only (the stop token included when hit), decoded in one device call."""
        out: list[int] = []
        for ids in self._run([prompt], max_new_tokens, temperature, top_k, top_p, stop, seed, chunk=None):
            out.extend(ids[0])
        return out

    def generate_batch(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 0.0,
                       top_k: int | None = None, top_p: float | None = None, stop: Sequence[int] = (),
                       seed: int = 0) -> list[list[int]]:
        """`generate` for several prompts at once (of any lengths); one list of new ids per prompt."""
        outs: list[list[int]] = [[] for _ in prompts]
        for ids in self._run(prompts, max_new_tokens, temperature, top_k, top_p, stop, seed, chunk=None):
            for row, new in zip(outs, ids):
                row.extend(new)
        return outs

    def stream(self, prompt: Sequence[int], max_new_tokens: int, temperature: float = 0.0,
               top_k: int | None = None, top_p: float | None = None, stop: Sequence[int] = (),
               seed: int = 0, chunk: int | None = None) -> Iterator[int]:
        """Yield the same ids as `generate`, as they come: the first right after prefill, then a chunk of
        tokens per device call. Stop iterating at any time; the cache stays consistent."""
        for ids in self._run([prompt], max_new_tokens, temperature, top_k, top_p, stop, seed,
                             chunk=chunk or self.chunk):
            yield from ids[0]

    def reset(self) -> None:
        """Forget the cached prefix (the next call prefills its whole prompt)."""
        self._cache, self._cached_tokens = None, []

    def cache_len(self, prompt_len: int, max_new_tokens: int) -> int:
        """The cache slots a fresh call allocates (and each decode step's attention reads)."""
        return _bucket(prompt_len + max_new_tokens, _MIN_CACHE_BUCKET, self.config.seq_len)

    # --- the work -----------------------------------------------------------------------------------

    def _check(self, prompts, max_new_tokens, temperature, top_k, top_p):
        S = self.config.seq_len
        if not prompts:
            raise ValueError("no prompts given")
        for p in prompts:
            if len(p) == 0:
                raise ValueError("empty prompt: start it with <|bos|>")
            if len(p) >= S:
                raise PromptTooLongError(
                    f"prompt of {len(p)} tokens does not fit the model's context of {S} tokens with room "
                    f"for a reply; shorten it to at most {S - 1} tokens")
            bad = [t for t in p if not 0 <= int(t) < self.config.vocab_size]
            if bad:
                raise ValueError(f"prompt holds ids outside the vocabulary [0, {self.config.vocab_size}): {bad[:5]}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.config.vocab_size:
            raise ValueError(f"top_k must be in [1, {self.config.vocab_size}], got {top_k}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")

    def _prepare_cache(self, prompts, max_new_tokens):
        """The cache for this call and the slot each row's prefill starts at (> 0 when a prefix is reused)."""
        S, B = self.config.seq_len, len(prompts)
        cache_len = self.cache_len(max(len(p) for p in prompts), max_new_tokens)
        if B != 1:
            return None, S if self.fixed_batch_shapes else cache_len, np.zeros(B, np.int32)
        prompt = list(prompts[0])
        reuse = 0
        if self._cache is not None:
            cached = self._cached_tokens
            n = min(len(cached), len(prompt) - 1)  # prefill at least one token: it gives the logits
            while reuse < n and cached[reuse] == prompt[reuse]:
                reuse += 1
            if reuse and reuse + _bucket(len(prompt) - reuse, _MIN_PROMPT_BUCKET, S) > max(
                    cache_len, self._cache[0][0].shape[2]):
                reuse = 0  # the suffix's padded bucket would run past the cache: prefill it all
        if reuse == 0:
            cache = None  # the prefill program allocates it
        else:
            cache, have = self._cache, self._cache[0][0].shape[2]
            if have < cache_len:
                cache = _grow(cache, cache_len)
            cache_len = max(cache_len, have)
        return cache, cache_len, np.array([reuse], np.int32)

    def _run(self, prompts, max_new_tokens, temperature, top_k, top_p, stop, seed, chunk):
        """Yield, per device call, one list of new ids per row (empty for rows already finished).
        In chunks (streaming), the cache starts at the bucket of prompt + one chunk and doubles when a
        chunk could run past it: every decode step attends over the whole cache, and on the 2-core CPU a
        step took 6.2 / 8.0 / 11.5 / 21.0 ms at 256 / 512 / 1024 / 2048 slots (depth 8, `nanocode bench
        sample --new-tokens 128|384|896|1900`), so an agent reply that may run to 1,024 tokens streamed at
        ~47 tok/s in a cache sized for all of them (training/LOG.md 2026-12-04)."""
        self._check(prompts, max_new_tokens, temperature, top_k, top_p)
        B = len(prompts)
        greedy = temperature == 0.0
        if greedy:
            top_k, top_p = None, None
        static = dict(graphdef=self.graphdef, greedy=greedy, top_k=top_k, nucleus=top_p is not None)
        temperature_ = jnp.float32(temperature if temperature > 0 else 1.0)
        top_p_ = jnp.float32(top_p if top_p is not None else 1.0)
        stop_list = sorted({int(t) for t in stop})
        stop_ids = np.full(max(8, -(-len(stop_list) // 8) * 8), _NO_STOP, np.int32)
        stop_ids[:len(stop_list)] = stop_list
        key = jax.random.key(seed)

        planned = max_new_tokens if chunk is None else min(max_new_tokens, chunk)
        cache, cache_len, start_B = self._prepare_cache(prompts, planned)
        length_B = np.array([len(p) for p in prompts], np.int32)
        fixed = self.fixed_batch_shapes and B != 1
        T = _bucket(int((length_B - start_B).max()), _MIN_BATCH_PROMPT_BUCKET if fixed else _MIN_PROMPT_BUCKET,
                    cache_len)
        ids_BxT = np.zeros((B, T), np.int32)
        for b, p in enumerate(prompts):
            suffix = np.asarray(p[start_B[b]:], np.int32)
            ids_BxT[b, :len(suffix)] = suffix
        self._cache = None  # its buffers are donated to the device call
        state = self._prefill(params=self.params, cache=cache, ids_BxT=ids_BxT, start_B=start_B,
                              length_B=length_B, key=key, temperature=temperature_, top_p=top_p_,
                              stop_ids=stop_ids, cache_len=cache_len, **static)
        fed = [list(p) for p in prompts]  # per row: the tokens whose K/V are in the cache
        first, done = jax.device_get((state.token_B, state.done_B))
        last = [int(t) for t in first]
        self._remember(state, fed, last)
        yield [[t] for t in last]

        remaining = max_new_tokens - 1
        S = self.config.seq_len
        while remaining > 0 and not done.all():
            limit = remaining if chunk is None else min(chunk, remaining)
            have = state.cache[0][0].shape[2]
            need = max(len(f) for f in fed) + limit + 1  # slots this call may write, and one to spare
            if need >= have and have < S:
                state = state._replace(cache=_grow(state.cache, _bucket(need + 1, _MIN_CACHE_BUCKET, S)))
            self._cache = None
            state, out_BxL, n = self._decode(params=self.params, state=state, limit=jnp.int32(limit),
                                             temperature=temperature_, top_p=top_p_, stop_ids=stop_ids,
                                             unroll=self.unroll, **static)
            out, n, done = jax.device_get((out_BxL, n, state.done_B))
            rows = []
            for b in range(B):
                new = [int(t) for t in out[b, :n] if t != PAD]
                if new:  # the previous last token is now in the cache; the newest is not
                    fed[b].append(last[b])
                    fed[b].extend(new[:-1])
                    last[b] = new[-1]
                rows.append(new)
            self._remember(state, fed, last)
            remaining -= int(n)
            yield rows

    def _remember(self, state, fed, last):
        if len(fed) == 1:
            self._cache, self._cached_tokens = state.cache, list(fed[0])
