"""Where the agent loop gets tokens from. The loop only needs this small protocol:

    source.context_len                                     the model's context in tokens
    source.stream(prompt_ids, max_new_tokens, stop, cancel, temperature) -> Iterator[list[int]]

`stream` yields chunks of newly generated ids, ending after a stop id (which it includes) or after
max_new_tokens. `SamplerSource` adapts the real KV-cache sampler; `ScriptedSource` replays fixed replies,
for tests of the loop and of the front ends (no model needed).
"""
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Protocol

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer


class TokenSource(Protocol):
    context_len: int

    def stream(self, prompt_ids: list[int], max_new_tokens: int, stop: Sequence[int],
               cancel: threading.Event | None = None, temperature: float = 0.0) -> Iterator[list[int]]: ...


_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


def encode_script(tok: Tokenizer, text: str) -> list[int]:
    """Ids for text written with literal special tokens, e.g. 'hi<|tool_call_start|>Read<|tool_arg|>...'.
    Only for scripts and tests: real text never turns into special ids (tokenizer.encode keeps them bytes)."""
    ids: list[int] = []
    for piece in _SPECIAL_RE.split(text):
        if piece in SPECIAL_TOKENS:
            ids.append(tok.special(piece))
        elif piece:
            ids.extend(tok.encode(piece))
    return ids


class ScriptExhausted(RuntimeError):
    pass


class ScriptedSource:
    """Replays one scripted reply per `stream` call, `chunk` ids at a time, like a sampler would: it stops
    after a stop id or max_new_tokens. A reply is a list of ids or a string for `encode_script`.
    `prompts` records every prompt it was given; `delay` sleeps before each chunk (to test interrupts)."""

    def __init__(self, replies: Sequence[str | list[int]], tok: Tokenizer | None = None, *,
                 context_len: int = 2048, chunk: int = 1, delay: float = 0.0):
        if any(isinstance(r, str) for r in replies) and tok is None:
            raise ValueError("ScriptedSource needs the tokenizer to encode string replies")
        self.replies = deque(encode_script(tok, r) if isinstance(r, str) else list(r) for r in replies)
        self.context_len, self.chunk, self.delay = context_len, chunk, delay
        self.prompts: list[list[int]] = []

    def stream(self, prompt_ids, max_new_tokens, stop, cancel=None, temperature=0.0):
        self.prompts.append(list(prompt_ids))
        if not self.replies:
            raise ScriptExhausted(f"the script has no reply left for generation #{len(self.prompts)}")
        reply = self.replies.popleft()
        stop = set(stop)
        out: list[int] = []
        for i in reply[:max_new_tokens]:
            out.append(i)
            if i in stop or len(out) == self.chunk:
                if self.delay:
                    time.sleep(self.delay)
                yield out
                if i in stop:
                    return
                out = []
        if out:
            yield out


class SamplerSource:
    """The real model: `nanocode.sampler.Sampler` streaming with a KV cache."""

    def __init__(self, sampler, context_len: int, *, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None):
        self.sampler, self.context_len = sampler, context_len
        self.top_k, self.top_p = top_k, top_p
        self.seed = seed if seed is not None else int(time.time_ns() % 2**31)
        self._calls = 0
        # One generation at a time: the sampler keeps one KV cache (for prefix reuse), and warm_up runs in a
        # background thread while the user types.
        self.lock = threading.Lock()

    def warm_up(self, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0) -> None:
        """Runs the first reply's programs once, so they are compiled (or loaded from the JAX cache) before the
        user presses Enter: prefill at the small prompt buckets (the sampler pads prompts to powers of two)
        and, once, a decode chunk at the reply's cache size (decode does not depend on the prompt length).
        A prefill into a fresh cache and one that extends a cached prefix are different programs (measured
        with jax_log_compiles: without the second 16 below, the first request compiled for 4 s)."""
        with self.lock:
            # bos + n copies of one token: after the first call the sampler reuses only the cached bos, so the
            # padded suffix lands exactly on bucket n (the first call, with no cache yet, pads 16 to 16).
            fillers = sorted(set(prompt_ids[1:]) - {prompt_ids[0]}) or [prompt_ids[0]]
            for k, n in enumerate((15, 16, 32, 64)):
                if n + 2 >= self.context_len:
                    break
                prompt = prompt_ids[:1] + [fillers[k % len(fillers)]] * n
                tokens = self.sampler.stream(prompt, max_new_tokens, temperature=temperature, top_k=self.top_k,
                                             top_p=self.top_p)
                for i, _ in enumerate(tokens):  # the prefill's token; the first time also a decode chunk
                    if i >= (1 if k == 0 else 0):
                        break
                tokens.close()

    def stream(self, prompt_ids, max_new_tokens, stop, cancel=None, temperature=0.0):
        with self.lock:
            yield from self._stream(prompt_ids, max_new_tokens, stop, cancel, temperature)

    def _stream(self, prompt_ids, max_new_tokens, stop, cancel, temperature):
        # A new seed per generation, so that a retried step does not repeat itself token for token when
        # sampling with temperature (greedy decoding is deterministic either way).
        self._calls += 1
        # The sampler yields ids one by one but computes them a chunk per device call; the loop checks
        # `cancel` between ids, so an interrupt waits for at most one chunk.
        for i in self.sampler.stream(list(prompt_ids), max_new_tokens, temperature=temperature,
                                     top_k=self.top_k, top_p=self.top_p, stop=tuple(stop),
                                     seed=self.seed + self._calls):
            yield [int(i)]
            if cancel is not None and cancel.is_set():
                return
