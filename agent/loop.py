"""The agent loop: render the conversation, stream tokens until a stop token, parse the call, ask the
permission policy, execute, append the result, and continue until the turn ends, a step limit is hit,
the same call keeps failing, or the user interrupts. Every step is an agent.events event.

`Agent.run_turn` is a generator the front ends drive (the Textual app in a worker thread, the REPL and
`nanocode run` directly). It never raises: a failure becomes an Error event, and every turn ends with
exactly one TurnEnd.
"""
import codecs
import copy
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import tools
from tools.registry import undo as undo_change
from tools.result import FileChange
from agent.context import ContextFull, fit_prompt, trim_result
from agent.events import Error, Event, Permission, TextDelta, ToolCall, ToolResult, TurnEnd
from agent.memory import Memory
from agent.permissions import ANSWERS, Decision, Permissions
from agent.session import Session
from nanocode.template import (ToolCallError, ToolCallPart, ToolResultPart, declined_message, parse_assistant,
                               part_to_json, render_conversation, render_prompt, stop_ids)
from nanocode.tokenizer import Tokenizer

Ask = Callable[[ToolCall], Decision]


class UndoError(RuntimeError):
    """Nothing to undo, or the file changed since the Edit (reverting would lose that work)."""


def final_text(content: list[dict]) -> str:
    """The prose after the turn's last tool call or result: the answer `nanocode run` prints."""
    out: list[str] = []
    for p in content:
        if p["type"] == "text":
            out.append(p["text"])
        else:
            out.clear()
    return "".join(out).strip()


class Agent:
    def __init__(self, source, tokenizer: Tokenizer, workspace: Path, permissions: Permissions, *,
                 max_steps: int = 20, session: Session | None = None, temperature: float = 0.0,
                 max_reply_tokens: int = 1024, result_budget: int | None = None, max_repeats: int = 3,
                 record_preferences: bool = True, memory: Memory | None = None):
        """source: an agent.source.TokenSource. max_steps: tool calls (including rejected and malformed ones)
        per turn. max_reply_tokens: per generation. result_budget: tokens of a tool result the model sees
        (default a quarter of the context). max_repeats: identical calls (no successful Edit in between)
        that end the turn.
        record_preferences: keep rejected calls as DPO data (off for `nanocode run`, whose rejections
        are a missing flag, not a person's judgement). memory: the project's AGENTS.md notes (agent/memory.py),
        read at the head of every prompt."""
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.source, self.tok = source, tokenizer
        self.workspace = Path(workspace).resolve()
        self.permissions, self.session = permissions, session
        self.max_steps, self.temperature, self.max_repeats = max_steps, temperature, max_repeats
        self.context_len: int = int(source.context_len)
        self.max_reply_tokens = max_reply_tokens
        # Room kept free for the reply when the prompt is fitted; the rest of the context is the prompt's.
        self.reply_reserve = max(16, min(max_reply_tokens, self.context_len // 4))
        self.result_budget = result_budget or max(64, self.context_len // 4)
        self.record_preferences = record_preferences
        self.memory = memory
        self.messages: list[dict] = list(session.messages) if session is not None else []
        self.context_used = 0
        self.tokens_per_second = 0.0
        self.changes: list[FileChange] = []  # this session's Edits, oldest first, for /undo
        self._call_id = 0
        self._stop = set(stop_ids(tokenizer))
        self._call_start, self._arg, self._val = (tokenizer.special(t) for t in
                                                  ("tool_call_start", "tool_arg", "tool_val"))
        self._note_for_model = ""  # told to the model with the next request (e.g. that /undo reverted an edit)
        self._pending_preference: dict | None = None  # a rejected call waiting for its `chosen` side
        if self.messages:  # a resumed session: what it fills of the context
            self.context_used = len(render_conversation(self.messages, tokenizer)[0]) + (memory.tokens if memory else 0)

    # --- the public API ---------------------------------------------------------------------------

    def run_turn(self, user_text: str, ask: Ask, cancel: threading.Event | None = None) -> Iterator[Event]:
        """One user request: yields events, ending with exactly one TurnEnd. `ask` is called (and may block)
        only for calls that are not pre-approved. Setting `cancel` stops generation or a running Bash call
        and ends the turn as 'interrupted'."""
        cancel = cancel or threading.Event()
        self._pending_preference = None
        ended = False
        try:
            for event in self._turn(user_text, ask, cancel):
                ended = ended or isinstance(event, TurnEnd)
                yield event
        except Exception as e:  # the front end must survive anything the model or a tool does
            if not ended:
                yield Error(f"{type(e).__name__}: {e}", kind="internal")
                yield TurnEnd("error", final_text(self._reply_content()))
        finally:
            self._flush_preference(None)
            self._tidy_and_save()

    def undo(self) -> str:
        """Revert the last Edit of this session; the model is told with the next request."""
        if not self.changes:
            raise UndoError("nothing to undo: no Edit has changed a file in this session")
        change = self.changes[-1]
        result = undo_change(change, self.workspace)
        if not result.ok:
            raise UndoError(result.output)
        self.changes.pop()
        what = f"the creation of {change.path}" if change.before is None else f"your edit of {change.path}"
        self._note_for_model += f"(I undid {what}.)\n"
        return result.output.splitlines()[0]

    def warm_up(self) -> None:
        """Compiles (or loads from the JAX cache) the programs a first short request runs, so that its reply
        streams at once. Front ends call it in the background right after start-up; the source serialises
        it with real generations."""
        warm = getattr(self.source, "warm_up", None)
        if warm is not None:
            prompt = render_prompt([{"role": "user", "content": "what does this repository do?"}], self.tok)
            warm(prompt, self._max_new(prompt), self.temperature)

    def clear(self) -> list[str]:
        """Forget the conversation and the "always allow" answers given in it; later turns go to a new
        session. Returns the tools that will ask again."""
        self.messages = []
        self.changes = []
        self._note_for_model = ""
        self.context_used = 0
        if self.session is not None:
            self.session = self.session.fresh()
        return self.permissions.forget_always()

    # --- one turn ---------------------------------------------------------------------------------

    def _reply_content(self) -> list[dict]:
        if self.messages and self.messages[-1]["role"] == "assistant":
            return self.messages[-1]["content"]
        return []

    def _turn(self, user_text: str, ask: Ask, cancel: threading.Event) -> Iterator[Event]:
        self.messages.append({"role": "user", "content": self._note_for_model + user_text})
        self._note_for_model = ""
        content: list[dict] = []
        self.messages.append({"role": "assistant", "content": content})
        failures: Counter = Counter()
        steps, told_about_context = 0, False

        def end(reason: str) -> TurnEnd:
            return TurnEnd(reason, final_text(content))

        while True:
            if cancel.is_set():
                yield end("interrupted")
                return
            try:
                fit = fit_prompt(self.messages, self.tok, self.context_len - self.reply_reserve,
                                 memory=self.memory.text if self.memory else "")
            except ContextFull as e:
                yield Error(str(e), kind="context")
                yield end("context")
                return
            if fit.changed and not told_about_context:
                told_about_context = True
                yield Error(f"the conversation outgrew the model's {self.context_len}-token context: "
                            f"{fit.describe()}", kind="context_trimmed")
            generated, cut_in_call = yield from self._generate(fit.ids, cancel)
            step_start = len(content)  # where this step's parts begin (for preference records)
            try:
                # A call cut at an out-of-place special token is closed here, so that the parser names that
                # token as the problem instead of calling the call truncated.
                parse_ids = generated + [self.tok.special("tool_call_end")] if cut_in_call else generated
                parts, done = parse_assistant(parse_ids, self.tok, allow_results=False)
            except ToolCallError as e:
                content.extend(part_to_json(p) for p in e.parts)
                if cancel.is_set():  # cut off by the user, not the model's fault
                    yield end("interrupted")
                    return
                self._flush_preference(None)
                if steps >= self.max_steps:
                    yield Error(f"the turn reached its limit of {self.max_steps} tool calls", kind="max_steps")
                    yield end("max_steps")
                    return
                steps += 1
                # The malformed call is not kept (it cannot be rendered back); the error result right after
                # the prose tells the model what was wrong so it can write the call again.
                content.append(part_to_json(ToolResultPart(False, f"malformed tool call: {e}")))
                # The user sees only what went wrong (the kind is in the event): the rest of the message tells the
                # model how to write the call, which the user can do nothing with.
                yield Error(f"the model wrote a malformed tool call: {str(e).split('; ')[0]}", kind=e.kind)
                self._save()
                key = ("malformed", e.kind, str(e))
                failures[key] += 1
                if failures[key] >= self.max_repeats:
                    yield Error(f"the model wrote the same malformed call {failures[key]} times; stopping the turn",
                                kind="repeated_failure")
                    yield end("repeated_failure")
                    return
                continue

            call = parts.pop() if parts and isinstance(parts[-1], ToolCallPart) else None
            content.extend(part_to_json(p) for p in parts)
            if done:
                self._flush_preference(content[step_start:])
                yield end("done")
                return
            if call is None:
                self._flush_preference(None)
                if cancel.is_set():
                    yield end("interrupted")
                else:
                    yield Error(f"the reply reached the {len(generated)}-token limit without finishing",
                                kind="length")
                    yield end("length")
                return
            if steps >= self.max_steps:
                self._flush_preference(None)
                yield Error(f"the turn reached its limit of {self.max_steps} tool calls; the model's next "
                            f"call ({call.name}) was not run. Say 'continue' to go on.", kind="max_steps")
                yield end("max_steps")
                return
            steps += 1

            result, rejected = yield from self._call(call, ask, cancel, content, step_start)
            content.append(part_to_json(call))
            content.append(part_to_json(result))
            self._save()
            if cancel.is_set():
                yield end("interrupted")
                return
            # The same call again, with nothing edited in between, cannot answer differently: a failing call
            # repeated, or a Grep that found nothing run ten times over (the shipped model's loop, issue 15).
            # A successful Edit changes the files, so a rerun of the tests after a fix starts the count anew.
            if call.name == "Edit" and result.ok:
                failures.clear()
                continue
            key = ("call", call.name, tuple(sorted(call.args.items())))
            failures[key] += 1
            if failures[key] >= self.max_repeats:
                what = "was rejected" if rejected else "failed" if not result.ok else "gave the same result"
                yield Error(f"the model made the same {call.name} call {failures[key]} times and it {what} each "
                            "time; stopping the turn", kind="repeated_failure")
                yield end("repeated_failure")
                return

    def _max_new(self, prompt: list[int]) -> int:
        return max(1, min(self.max_reply_tokens, self.context_len - len(prompt)))

    def _generate(self, prompt: list[int], cancel: threading.Event) -> Iterator[Event]:
        """Streams one generation, yielding prose as TextDelta; returns (the generated ids, whether it was cut
        inside a call). Stops at a stop token, or early at a special token that cannot continue a well-formed
        reply (the parser names it)."""
        max_new = self._max_new(prompt)
        # Tokens can split a UTF-8 character: decode bytes incrementally so no U+FFFD appears mid-stream.
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        table, specials = self.tok.token_bytes, self.tok.special_ids
        generated: list[int] = []
        in_call, finished, cut_in_call = False, False, False
        started = first_at = time.perf_counter()
        first_n = 0
        self.context_used = len(prompt)
        stream = self.source.stream(prompt, max_new, tuple(self._stop), cancel=cancel,
                                    temperature=self.temperature)
        try:
            for chunk in stream:
                if not generated:
                    first_at, first_n = time.perf_counter(), len(chunk)
                text: list[str] = []
                for i in chunk:
                    if i >= len(table):
                        # A model's vocabulary may be padded past the tokenizer's; such an id has no text.
                        continue
                    generated.append(i)
                    if i not in specials:
                        if not in_call:
                            text.append(utf8.decode(table[i]))
                        continue
                    text.append(utf8.decode(b"", final=True))
                    utf8.reset()
                    if i == self._call_start and not in_call:
                        in_call = True
                    elif not (in_call and i in (self._arg, self._val)):
                        finished = True  # a stop token, or a special token out of place
                        cut_in_call = in_call and i not in self._stop
                        break
                delta = "".join(text)
                if delta:
                    yield TextDelta(delta)
                self.context_used = len(prompt) + len(generated)
                if finished or cancel.is_set():
                    break
        finally:
            if hasattr(stream, "close"):
                stream.close()
        tail = utf8.decode(b"", final=True)
        if tail and not in_call:
            yield TextDelta(tail)
        elapsed = time.perf_counter() - first_at
        decoded = len(generated) - first_n
        # Decode speed after the first chunk (prefill latency is a separate figure).
        self.tokens_per_second = decoded / elapsed if decoded > 0 and elapsed > 0 else \
            len(generated) / max(time.perf_counter() - started, 1e-9)
        return generated, cut_in_call

    def _call(self, call: ToolCallPart, ask: Ask, cancel: threading.Event, content: list[dict],
              step_start: int) -> Iterator[Event]:
        """Asks, runs and reports one call; returns (the result part the model sees, whether it was rejected)."""
        self._call_id += 1
        cid = self._call_id
        event = ToolCall(cid, call.name, dict(call.args))
        yield event
        if self.permissions.preapproved(call.name):
            answer, note = "auto", ""
        else:
            answer, note = ask(event)
            if answer not in ANSWERS:
                raise ValueError(f"ask() returned {answer!r}; expected one of {', '.join(ANSWERS)}")
            self.permissions.record(call.name, (answer, note))
        interrupted = cancel.is_set()  # the user stopped the turn while the question was open
        if interrupted:
            answer, note = "reject", "the user interrupted the turn before this call ran"
        yield Permission(cid, answer, note if answer == "reject" else "")

        if answer == "reject":
            self._flush_preference(None)
            if not interrupted and self.session is not None and self.record_preferences:
                self._pending_preference = {
                    "messages": copy.deepcopy(self.messages[:-1]),
                    "rejected": {"role": "assistant", "content": copy.deepcopy(content) + [part_to_json(call)]},
                    "prefix": copy.deepcopy(content[:step_start]),
                    "note": note.strip(),
                }
            output = declined_message(note)
            yield ToolResult(cid, call.name, False, output)
            return ToolResultPart(False, output), True

        # The user accepted this step: it is the preferred alternative to a call they just rejected.
        self._flush_preference(content[step_start:] + [part_to_json(call)])
        result = tools.execute(call.name, call.args, self.workspace, cancel=cancel,
                               sandbox=self.permissions.sandbox)
        if result.change is not None:
            self.changes.append(result.change)
        yield ToolResult(cid, call.name, result.ok, result.output)
        seen = trim_result(result.output, call.name, call.args, self.tok, self.result_budget)
        return ToolResultPart(result.ok, seen), False

    # --- sessions ---------------------------------------------------------------------------------

    def _flush_preference(self, chosen_step: list[dict] | None) -> None:
        """Writes the pending rejection as a preference record; `chosen_step` is the accepted next step."""
        pending, self._pending_preference = self._pending_preference, None
        if pending is None:
            return
        prefix = pending.pop("prefix")
        pending["chosen"] = ({"role": "assistant", "content": prefix + copy.deepcopy(chosen_step)}
                             if chosen_step else None)
        self.session.add_preference(pending)

    def _save(self) -> None:
        if self.session is not None:
            self.session.save(self.messages)

    def _tidy_and_save(self) -> None:
        # A turn interrupted before the model wrote anything leaves no empty assistant message behind.
        if self.messages and self.messages[-1]["role"] == "assistant" and not self.messages[-1]["content"]:
            self.messages.pop()
        self._save()


def threaded(agent: Agent, user_text: str, ask: Ask, cancel: threading.Event,
             poll: Callable[[], None] | None = None) -> Iterator[Event]:
    """Runs `agent.run_turn` in a worker thread and yields its events on the calling thread, where `ask` is
    also called (a terminal prompt must run on the main thread). Ctrl+C (KeyboardInterrupt) sets `cancel`,
    so the turn ends as 'interrupted' within a chunk of tokens; a second Ctrl+C in the same turn is raised.
    `poll` runs every 50 ms while waiting (the REPL checks for Esc there)."""
    events: queue.Queue = queue.Queue()
    answer: queue.Queue = queue.Queue()
    done = object()

    def ask_on_caller(call: ToolCall) -> Decision:
        events.put(("ask", call))
        return answer.get()

    def work():
        try:
            for event in agent.run_turn(user_text, ask_on_caller, cancel):
                events.put(("event", event))
        finally:
            events.put(("event", done))

    worker = threading.Thread(target=work, name="nanocode-turn", daemon=True)
    worker.start()
    interrupted = finished = False
    try:
        while not finished:
            try:
                if poll is not None:
                    poll()
                try:
                    kind, item = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if kind == "ask":
                    try:
                        decision = ask(item)
                    except BaseException:
                        answer.put(("reject", ""))  # never leave the worker waiting
                        raise
                    answer.put(decision)
                elif item is done:
                    finished = True
                else:
                    yield item
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                cancel.set()
    finally:
        if not finished:  # the caller stopped early: stop the turn and unblock a pending question
            cancel.set()
            answer.put(("reject", ""))
    worker.join()
