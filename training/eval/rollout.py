"""Rollouts: agent tasks run by the model through the real agent loop and the real tools, many at once.

Each rollout gets a throwaway workspace, an agent loop in its own thread and a row of a shared batcher
(agent/batch.py), so the model decodes every waiting row in one call while tool calls run in parallel on
the CPU cores. Every call is approved (the workspace is a temporary copy). A rollout is cut, and scored
as a failure, when it runs past `deadline_s` (the loop is interrupted, which also kills a running Bash
call); the tools cap what a call prints and the loop caps the reply, so nothing floods.

Used by RL (training/rl.py: k samples per task at temperature ~1) and by batched agent evals (k = 1,
greedy). The agent package is imported inside the functions: training code imports and runs without the
UI libraries, and agent.loop imports none.
"""
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nanocode.template import render_conversation
from nanocode.tokenizer import Tokenizer
from training.eval.agent_tasks import AgentTask
from training.eval.agent import TURN_ERRORS, repeated_failures  # TURN_ERRORS: about the turn, not a call



@dataclass
class Rollout:
    task_id: str
    kind: str
    sample: int                              # which of the task's k samples
    success: bool
    detail: str                              # the checker's verdict, or why the rollout was cut
    messages: list[dict]                     # the conversation (DESIGN.md), what the model is trained on
    answer: str
    end: str                                 # TurnEnd.reason, or "deadline"
    calls: list[tuple[str, dict, bool]]      # (tool, args, ok) of every call that ran
    malformed: int                           # calls the loop could not parse
    repeated_failures: int                   # calls identical to an earlier call that had failed
    generated_tokens: int
    seconds: float
    reward: float = 0.0


def run_one(task: AgentTask, sample: int, source, tok: Tokenizer, *, max_steps: int, max_reply_tokens: int,
            temperature: float, deadline_s: float) -> Rollout:
    from agent.events import Error, ToolCall, ToolResult, TurnEnd
    from agent.loop import Agent
    from agent.permissions import Permissions

    started = time.perf_counter()
    cancel = threading.Event()
    timer = threading.Timer(deadline_s, cancel.set)
    calls, pending, malformed = [], {}, 0
    answer, end = "", "none"
    # ignore_cleanup_errors: the model's Bash calls may have removed or locked files in the workspace
    with tempfile.TemporaryDirectory(prefix="nanocode-rollout-", ignore_cleanup_errors=True) as tmp:
        ws = Path(tmp)
        task.materialise(ws)
        agent = Agent(source, tok, ws, Permissions(yes=True), max_steps=max_steps,
                      max_reply_tokens=max_reply_tokens, temperature=temperature, record_preferences=False)
        timer.start()
        try:
            for event in agent.run_turn(task.prompt, _never_asked, cancel):
                if isinstance(event, ToolCall):
                    pending[event.call_id] = event
                elif isinstance(event, ToolResult):
                    call = pending.pop(event.call_id)
                    calls.append((call.name, dict(call.args), event.ok))
                elif isinstance(event, Error):
                    malformed += event.kind not in TURN_ERRORS
                elif isinstance(event, TurnEnd):
                    answer, end = event.text, event.reason
        finally:
            timer.cancel()
        messages = agent.messages
        if cancel.is_set():
            success, detail, end = False, f"cut after {deadline_s:g} s", "deadline"
        else:
            outcome = task.check(ws, answer, calls)
            success, detail = outcome.success, outcome.detail
    generated = int(sum(render_conversation(messages, tok)[1])) if messages else 0  # the model's own tokens
    return Rollout(task.id, task.kind, sample, success, detail, messages, answer, end, calls, malformed,
                   repeated_failures(calls), generated, time.perf_counter() - started)


def _never_asked(call):
    raise RuntimeError(f"rollouts approve every call; nothing should ask about {call.name}")


def run_rollouts(tasks: list[AgentTask], sampler, tok: Tokenizer, *, samples: int = 1, temperature: float = 0.0,
                 max_steps: int = 8, max_reply_tokens: int = 256, deadline_s: float = 120.0, rows: int = 64,
                 seed: int = 0, top_p: float | None = None, max_wait_s: float | None = None,
                 progress=None) -> tuple[list[Rollout], dict]:
    """`samples` rollouts of every task, `rows` in flight at once. Returns the rollouts (task order, then
    sample order) and throughput figures: rollouts/min, generated tokens/s, batches. max_wait_s: how long a
    batch waits for rows still running a tool; None (the default): lockstep, every rollout at once and the same
    batches on every run (agent/batch.py). Lockstep was also the faster on an H200 (384 rollouts of a fresh
    depth-8 model: 21.8 s against 77.3 s with a 0.05 s wait, whose partial batches each run as long as their
    longest row; training/LOG.md)."""
    from agent.batch import Batcher

    jobs = [(task, k) for task in tasks for k in range(samples)]
    lockstep = max_wait_s is None
    started = time.perf_counter()
    with Batcher(sampler, sampler.config.seq_len, seed=seed, top_p=top_p, max_wait_s=max_wait_s) as batcher:
        # In lockstep every rollout runs at once with its row made here, in job order, so that the batches
        # are the same on every run; otherwise `rows` at a time, each row made when its rollout starts.
        sources = [batcher.row() for _ in jobs] if lockstep else None

        def work(i):
            task, k = jobs[i]
            row = sources[i] if lockstep else batcher.row()
            try:
                result = run_one(task, k, row, tok, max_steps=max_steps, max_reply_tokens=max_reply_tokens,
                                 temperature=temperature, deadline_s=deadline_s)
            finally:
                row.finish()
            if progress is not None:
                progress(result)
            return result
        with ThreadPoolExecutor(max(1, len(jobs) if lockstep else min(rows, len(jobs)))) as pool:
            out = list(pool.map(work, range(len(jobs))))
        batches, tokens, decode_s = batcher.batches, batcher.tokens, batcher.decode_s
    seconds = max(time.perf_counter() - started, 1e-9)
    return out, {"rollouts": len(out), "seconds": round(seconds, 2), "rollouts_per_min": round(60 * len(out) / seconds, 1),
                 "tokens_per_s": round(tokens / seconds, 1), "batches": batches,
                 "decode_s": round(decode_s, 2)}
