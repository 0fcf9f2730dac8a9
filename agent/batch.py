"""Many agent loops on one model at once: each loop runs in its own thread with its own `RowSource`, and a
`Batcher` gathers their pending generations into one `Sampler.generate_batch` call.

A row pauses at its tool call (the stop ids end its generation), runs the tool in its own thread (so tool
calls run in parallel over the CPU cores) and comes back with the next prompt; the batcher decodes as soon
as every live row is waiting, or after `max_wait_s` when some row is still busy with a tool, so one slow
Bash call does not hold the others back. With `max_wait_s=None` the rows move in lockstep (every batch holds
every live row, in the order the rows were made), so a seeded run decodes the same batches every time:
what RL needs to resume a round exactly. This is what RL rollouts and batched evals run on; the agent loop
itself (agent/loop.py) is unchanged: it only sees a token source.
"""
import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Request:
    row: int
    prompt: list[int]
    max_new_tokens: int
    stop: tuple[int, ...]
    temperature: float
    done: threading.Event = field(default_factory=threading.Event)
    result: list[int] | None = None
    error: BaseException | None = None


class Batcher:
    """Owns the sampler; rows (RowSource) submit requests and block until their batch has run.

    Requests decode together only when their sampling settings (stop ids, temperature) agree; different
    settings are served in turn. Every batch gets a new seed, so identical prompts in one batch (k samples
    of one task) still sample independently: the sampler draws each row's noise separately."""

    def __init__(self, sampler, context_len: int, *, seed: int = 0, max_wait_s: float | None = 0.05,
                 top_k: int | None = None, top_p: float | None = None):
        self.sampler, self.context_len = sampler, context_len
        self.top_k, self.top_p = top_k, top_p
        self.seed, self.max_wait_s = seed, max_wait_s
        self._cv = threading.Condition()
        self._pending: list[_Request] = []
        self._live = 0          # rows registered and not finished
        self._rows = 0          # rows registered so far (a row's id is its index)
        self._closed = False
        self.batches = 0        # generate_batch calls so far
        self.rows_decoded = 0   # requests served
        self.tokens = 0         # new tokens generated
        self.decode_s = 0.0     # seconds inside generate_batch (compilation included)
        self._thread = threading.Thread(target=self._serve, name="nanocode-batcher", daemon=True)
        self._thread.start()

    def row(self) -> "RowSource":
        with self._cv:
            self._live += 1
            self._rows += 1
            return RowSource(self, self._rows - 1)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- rows --------------------------------------------------------------------------------------

    def _submit(self, request: _Request) -> list[int]:
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append(request)
            self._cv.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result or []

    def _finish_row(self) -> None:
        with self._cv:
            self._live -= 1
            self._cv.notify_all()

    # --- the serving thread ------------------------------------------------------------------------

    def _take_batch(self) -> list[_Request] | None:
        with self._cv:
            while True:
                if self._pending:
                    first_wait = time.monotonic()
                    # Wait for the rows still running a tool, but not forever.
                    while len(self._pending) < self._live and not self._closed:
                        if self.max_wait_s is None:
                            self._cv.wait()
                            continue
                        left = self.max_wait_s - (time.monotonic() - first_wait)
                        if left <= 0:
                            break
                        self._cv.wait(left)
                    self._pending.sort(key=lambda r: r.row)
                    key = (self._pending[0].stop, self._pending[0].temperature)
                    batch = [r for r in self._pending if (r.stop, r.temperature) == key]
                    self._pending = [r for r in self._pending if (r.stop, r.temperature) != key]
                    return batch
                if self._closed:
                    return None
                self._cv.wait()

    def _serve(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                # One budget for the batch: the largest a row asked for; each row is cut to its own after.
                budget = max(r.max_new_tokens for r in batch)
                # Rows padded to a power of two (copies of the first prompt, dropped after): the sampler's
                # programs are compiled per batch size, and a rollout's batch shrinks as rows finish. With
                # fixed batch shapes (GPU) to at least 8 rows, which cost the GPU next to nothing.
                prompts = [r.prompt for r in batch]
                size = 1 << (len(prompts) - 1).bit_length()
                if getattr(self.sampler, "fixed_batch_shapes", False):
                    size = max(size, 8)
                prompts += [prompts[0]] * (size - len(prompts))
                t0 = time.perf_counter()
                outs = self.sampler.generate_batch(prompts, budget,
                                                   temperature=batch[0].temperature, top_k=self.top_k,
                                                   top_p=self.top_p, stop=batch[0].stop,
                                                   seed=self.seed + self.batches)
                self.decode_s += time.perf_counter() - t0
                self.batches += 1
                for r, out in zip(batch, outs):
                    r.result = _cut(out, r.max_new_tokens, set(r.stop))
                    self.tokens += len(r.result)
                self.rows_decoded += len(batch)
            except BaseException as e:  # every waiting row gets the error instead of hanging
                for r in batch:
                    r.error = e
            for r in batch:
                r.done.set()


def _cut(ids: list[int], limit: int, stop: set[int]) -> list[int]:
    """The ids up to the first stop id (included) and at most `limit` of them."""
    out = []
    for i in ids[:limit]:
        out.append(i)
        if i in stop:
            break
    return out


class RowSource:
    """A token source (agent.source.TokenSource) for one agent loop whose generations run batched with the
    other rows of its Batcher. Call `finish()` when the row's episode is over (the batcher then stops
    waiting for it)."""

    def __init__(self, batcher: Batcher, row: int):
        self.batcher, self.row = batcher, row
        self.context_len = batcher.context_len
        self._finished = False

    def stream(self, prompt_ids, max_new_tokens, stop, cancel=None, temperature=0.0):
        request = _Request(self.row, list(prompt_ids), int(max_new_tokens), tuple(sorted(int(s) for s in stop)),
                           float(temperature))
        yield self.batcher._submit(request)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.batcher._finish_row()
