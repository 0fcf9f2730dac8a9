"""The one thread that runs the sampler for `nanocode serve`, and the queue requests wait in.

The sampler keeps one KV cache (nanocode/sampler.py: prefix reuse for batch 1), so two generations cannot
overlap: requests are queued first come, first served, and each streams its ids back as they are decoded.
A request whose client went away is cancelled between tokens, so the queue moves on. When more than
`max_waiting` requests wait, new ones are refused (the server answers 429) instead of piling up.

Batching waiting requests into one `generate_batch` call would raise throughput; it is not done yet (each
request has its own stop ids, budget and sampling settings, and streamed replies need the batch-1 path).
"""
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class Busy(RuntimeError):
    """The queue is full."""


@dataclass
class Job:
    prompt: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float | None
    top_k: int | None
    stop: Sequence[int]
    seed: int
    # Called on the worker thread with: a list of new ids, an exception (the generation failed), or None
    # (it is over). It must not block.
    emit: Callable[[object], None]
    cancel: threading.Event = field(default_factory=threading.Event)


class Engine:
    def __init__(self, sampler, *, max_waiting: int = 32):
        """sampler: anything with nanocode.sampler.Sampler's `stream(...)`."""
        self.sampler, self.max_waiting = sampler, max_waiting
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="nanocode-serve-engine", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def submit(self, job: Job) -> None:
        if self._jobs.qsize() >= self.max_waiting:
            raise Busy(f"{self._jobs.qsize()} requests are already waiting; try again shortly")
        self._jobs.put(job)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.cancel.is_set():
                job.emit(None)
                continue
            try:
                self._run(job)
            except Exception as e:  # reported to that request; the worker serves the next one
                job.emit(e)
            else:
                job.emit(None)

    def _run(self, job: Job) -> None:
        tokens = self.sampler.stream(job.prompt, job.max_new_tokens, temperature=job.temperature,
                                     top_k=job.top_k, top_p=job.top_p, stop=tuple(job.stop), seed=job.seed)
        try:
            for i in tokens:  # computed a chunk per device call, handed over one by one
                if job.cancel.is_set():
                    return
                job.emit([int(i)])
        finally:
            if hasattr(tokens, "close"):
                tokens.close()  # the sampler's cache stays consistent when a generation stops early


def fresh_seed() -> int:
    """A seed for a request that gave none: a retried request should not repeat itself token for token."""
    return time.time_ns() % 2**31
