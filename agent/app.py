"""The `nanocode chat` Textual app.

Entry point for the `chat` command:

    from agent.app import run_app
    run_app(make_agent, model_name="nanocode-d12", workspace=Path.cwd(), history_path=home / "history",
            notes=["every tool call asks for permission first"])

`make_agent` is either a ready `agent.loop.Agent` or a zero-argument callable that builds one (loads the
model). A callable runs in a worker thread while the UI is already up and the status line says
"loading model…"; a request typed meanwhile is queued and sent once the model is ready. An agent that
already holds messages (a resumed session) has its conversation drawn into the transcript first. After
loading, the worker calls `agent.warm_up()` (if it has one) and the status line says "compiling…" (a
request may be sent meanwhile). `notes` are start-up lines shown at the top of the transcript (a
full-screen app hides what was printed before it). `history_path` keeps the request history across runs.

What the app needs from the agent (agent/loop.py): `run_turn(text, ask, cancel)` (a generator of
agent.events, run here in a worker thread; `ask(call) -> (answer, note)` is called from that thread and
blocks until the user answers the inline prompt), `undo()`, `clear()`, `messages`, and `context_used`,
`context_len`, `tokens_per_second` for the status line. Esc / Ctrl+C set the `cancel` event the loop
polls; Ctrl+Q quits.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Footer, Input

from agent.events import Error, Event, Permission, TextDelta, ToolCall, ToolResult, TurnEnd
from agent.permissions import cleared_message
from agent.widgets.message import AssistantMessage, Notice, UserMessage
from agent.widgets.permission_prompt import PermissionPrompt
from agent.widgets.prompt_input import PromptInput
from agent.widgets.status_line import StatusLine
from agent.widgets.tool_call import ToolCallView

if TYPE_CHECKING:  # the real Agent pulls in JAX; the app must start without it
    from agent.loop import Agent

Decision = tuple[str, str]

HELP = """\
[b]/help[/b]   this help
[b]/clear[/b]  forget the conversation (the model starts fresh)
[b]/undo[/b]   revert the last Edit made in this session
[b]/exit[/b]   quit (also Ctrl+Q)
[b]Enter[/b] sends · [b]Up/Down[/b] recall earlier requests · [b]PageUp/PageDown[/b] scroll
[b]Esc[/b] or [b]Ctrl+C[/b] stops the model or a running command
At a tool prompt: [b]y[/b] allow once · [b]a[/b] always allow that tool this session ·
  [b]n[/b] reject, then type a note for the model and Enter (empty note = plain reject)
Click "▶ N more lines" under a result (or Tab to it, Enter) to expand it"""

class AgentEvent(Message):
    """An agent.events event, posted from the turn worker thread (post_message is thread-safe and
    keeps order, so prose, calls and results arrive in the order the loop produced them)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class PermissionRequest(Message):
    """The loop asked about a call; `answer` is resolved by the prompt (or by Esc / quit)."""

    def __init__(self, call: ToolCall, answer: Future) -> None:
        super().__init__()
        self.call, self.answer = call, answer


class TurnFinished(Message):
    """The worker thread left run_turn (normally after TurnEnd, also if the loop crashed)."""


class AgentLoaded(Message):
    def __init__(self, agent: Agent | None, error: str = "") -> None:
        super().__init__()
        self.agent, self.error = agent, error


class WarmedUp(Message):
    """The loaded agent has compiled its first programs (or had nothing to compile)."""


class NanocodeApp(App):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it too
    TITLE = "nanocode"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        # priority: these must work while the permission prompt or the note box has focus.
        Binding("escape", "interrupt", "stop", priority=True),
        Binding("ctrl+c", "interrupt", "stop", show=False, priority=True),
        Binding("ctrl+q", "quit", "quit", priority=True),
        Binding("pageup", "scroll_transcript(-1)", "scroll up", show=False),
        Binding("pagedown", "scroll_transcript(1)", "scroll down", show=False),
    ]

    def __init__(self, agent: Agent | Callable[[], Agent], *, model_name: str,
                 workspace: Path | None = None, history_path: Path | None = None,
                 notes: Sequence[str] = ()) -> None:
        super().__init__()
        self.notes = list(notes)
        self.agent: Agent | None = agent if hasattr(agent, "run_turn") else None
        self._factory = None if self.agent is not None else agent
        self.model_name = model_name
        # For the Edit diff preview; the agent's own workspace wins when none is given.
        self.workspace = workspace or getattr(self.agent, "workspace", None) or Path.cwd()
        self._workspace_given = workspace is not None
        self.history_path = history_path
        self.load_error = ""
        self._warming = False  # the load worker is compiling the first reply's programs
        self._cancel: threading.Event | None = None  # set while a turn runs
        self._queued: str | None = None              # a request typed while the model was loading
        self._stopped_at_call = False  # this turn was stopped at a permission prompt (the call's line says so)
        self._assistant: AssistantMessage | None = None
        self._calls: dict[int, ToolCallView] = {}
        self._asks: dict[int, tuple[Future, PermissionPrompt]] = {}

    # --- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield VerticalScroll(id="transcript", can_focus=False)
        yield PromptInput(self._read_history(), id="prompt")
        yield StatusLine(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.transcript.anchor()
        self.status.model = self.model_name
        self.prompt.focus()
        # Context fills token by token; a slow poll keeps the status line current without per-token work.
        # The timer belongs to the status line, so it dies with it when the app shuts down.
        self.status.set_interval(0.5, self._refresh_status)
        for note in self.notes:  # start-up lines (permission mode, resumed session): the screen hides stderr
            await self._add(Notice(note))
        if self.agent is not None:
            await self._agent_ready()
        else:
            self._refresh_status(self._idle_state())
            self._load_agent()

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#transcript", VerticalScroll)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    @property
    def busy(self) -> bool:
        return self._cancel is not None

    # --- model loading -----------------------------------------------------------------------------

    @work(thread=True, group="load")
    def _load_agent(self) -> None:
        try:
            agent = self._factory()
        except Exception as e:  # anything the loader raises must reach the user, not kill the app
            self.post_message(AgentLoaded(None, str(e) or type(e).__name__))
            return
        self.post_message(AgentLoaded(agent))
        # Compile the first reply's programs while the user types (the source serialises this with a
        # request sent meanwhile). Only a time saver: a failure here is left to the first real request.
        warm_up = getattr(agent, "warm_up", None)
        if warm_up is not None:
            try:
                warm_up()
            except Exception:
                pass
        self.post_message(WarmedUp())

    async def on_agent_loaded(self, message: AgentLoaded) -> None:
        if message.agent is None:
            self.load_error = message.error
            self._refresh_status(self._idle_state())
            unsent = "\nYour request was not sent." if self._queued is not None else ""
            self._queued = None
            await self._add(Notice(f"could not load the model: {message.error}{unsent}\n/exit quits.", "error"))
            return
        self.agent = message.agent
        self._warming = True
        await self._agent_ready()

    def on_warmed_up(self, message: WarmedUp) -> None:
        self._warming = False
        if not self.busy:
            self._refresh_status(self._idle_state())

    async def _agent_ready(self) -> None:
        if not self._workspace_given:
            self.workspace = getattr(self.agent, "workspace", self.workspace)
        # The project memory is read with the model (it needs the tokenizer to count): say what the model reads.
        if (memory := getattr(self.agent, "memory", None)) is not None:
            await self._add(Notice(memory.notice(), "error" if memory.cut else "info"))
            self.status.memory = ", ".join(memory.files)
        if self.agent.messages:
            await self._draw_history(self.agent.messages)
        self._refresh_status(self._idle_state())
        if self._queued is not None:
            text, self._queued = self._queued, None
            self._start_turn(text)

    # --- input -------------------------------------------------------------------------------------

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self.prompt:
            return
        text = event.value.strip()
        if not text:
            return
        if text.startswith("/"):
            self._remember(text)
            self.prompt.clear()
            await self._command(text)
            return
        if self.busy or self._queued is not None:
            # Keep the text in the box: nothing the user typed is lost.
            self.notify("The model is still working: wait for it, or press Esc to stop it.",
                        severity="warning")
            return
        self._remember(text)
        self.prompt.clear()
        await self._add(UserMessage(text))
        if self.agent is None:
            if self.load_error:
                await self._add(Notice(f"no model is loaded ({self.load_error}); /exit quits.", "error"))
                return
            self._queued = text
            await self._add(Notice("the model is still loading; your request is sent once it is ready."))
            return
        self._start_turn(text)

    async def _command(self, text: str) -> None:
        name = text.split()[0].lower()
        if name == "/help":
            await self._add(Notice(Content.from_markup(HELP), "help"))
        elif name in ("/exit", "/quit"):
            await self.action_quit()
        elif name in ("/clear", "/undo") and (self.busy or self._queued is not None):
            await self._add(Notice(f"{name} has to wait until the turn is over (Esc stops it).", "error"))
        elif name == "/clear":
            reset = (self.agent.clear() or []) if self.agent is not None else []
            await self.transcript.remove_children()
            self._calls.clear()
            self._assistant = None
            await self._add(Notice(cleared_message(reset)))
            self._refresh_status(self._idle_state())
        elif name == "/undo":
            if self.agent is None:
                await self._add(Notice("nothing to undo: no model has run yet.", "error"))
                return
            try:
                await self._add(Notice(self.agent.undo()))
            except Exception as e:  # the loop raises a clear error (nothing to undo, file changed, ...)
                await self._add(Notice(f"undo failed: {e}", "error"))
        else:
            await self._add(Notice(f"unknown command {name}; /help lists the commands.", "error"))

    def _read_history(self) -> list[str]:
        if self.history_path is None or not self.history_path.is_file():
            return []
        try:
            return self.history_path.read_text(encoding="utf-8").splitlines()[-1000:]
        except (OSError, UnicodeDecodeError):
            return []  # a broken history file must not stop the app from starting

    def _remember(self, text: str) -> None:
        self.prompt.remember(text)
        if self.history_path is not None:
            try:
                self.history_path.parent.mkdir(parents=True, exist_ok=True)
                with self.history_path.open("a", encoding="utf-8") as f:
                    f.write(text.replace("\n", " ") + "\n")
            except OSError as e:
                self.notify(f"could not save the input history to {self.history_path}: {e}", severity="warning")

    # --- a turn ------------------------------------------------------------------------------------

    def _start_turn(self, text: str) -> None:
        self._cancel = threading.Event()
        self._stopped_at_call = False
        self._assistant = None
        self._refresh_status("generating…")
        self.refresh_bindings()  # shows "Esc stop" in the footer
        self._turn_worker(text, self._cancel)

    @work(thread=True, group="turn", exclusive=True)
    def _turn_worker(self, text: str, cancel: threading.Event) -> None:
        def ask(call: ToolCall) -> Decision:
            answer: Future = Future()
            self.post_message(PermissionRequest(call, answer))
            while True:  # blocks this worker thread, never the UI
                try:
                    return answer.result(timeout=0.1)
                except TimeoutError:
                    if cancel.is_set():
                        return ("reject", "")

        try:
            for event in self.agent.run_turn(text, ask, cancel):
                self.post_message(AgentEvent(event))
        except Exception as e:  # a crash in the loop is shown, and the app stays usable
            self.post_message(AgentEvent(Error(f"the agent loop crashed: {type(e).__name__}: {e}", "crash")))
            self.post_message(AgentEvent(TurnEnd("error")))
        finally:
            self.post_message(TurnFinished())

    async def on_agent_event(self, message: AgentEvent) -> None:
        event = message.event
        if isinstance(event, TextDelta):
            if self._assistant is None:
                self._assistant = AssistantMessage()
                await self._add(self._assistant)
            await self._assistant.write(event.text)
            return  # the status line is refreshed on the coarser events; once per token is wasted work
        if isinstance(event, ToolCall):
            await self._end_prose()
            view = ToolCallView(event, self.workspace)
            self._calls[event.call_id] = view
            await self._add(view)
        elif isinstance(event, Permission):
            # Rejected because the user stopped the turn at the question: one line says so, instead of a
            # rejection note, a result repeating it and "stopped." below them.
            stopped = event.decision == "reject" and self._cancel is not None and self._cancel.is_set()
            self._stopped_at_call |= stopped
            if view := self._calls.get(event.call_id):
                view.set_decision("stopped" if stopped else event.decision, "" if stopped else event.note)
        elif isinstance(event, ToolResult):
            if view := self._calls.get(event.call_id):
                if not view.rejected:  # a rejected call's result only repeats the decision line, for the model
                    await view.set_result(event.ok, event.output)
            else:
                await self._add(Notice(f"{event.name}: {event.output}", "info" if event.ok else "error"))
        elif isinstance(event, Error):
            await self._end_prose()
            await self._add_error(event.message)
        elif isinstance(event, TurnEnd):
            await self._end_prose()
            # Every other early end (step limit, context, a repeated failure, ...) comes with an Error
            # event that already said why; only a stop by the user has no message of its own.
            if event.reason == "interrupted" and not self._stopped_at_call:
                await self._add(Notice("stopped."))
        self._refresh_status()

    async def on_permission_request(self, message: PermissionRequest) -> None:
        if message.answer.done():  # answered by Esc before the request got here
            return
        prompt = PermissionPrompt(message.call)
        self._asks[message.call.call_id] = (message.answer, prompt)
        view = self._calls.get(message.call.call_id)
        if view is not None:
            await self.transcript.mount(prompt, after=view)
        else:
            await self._add(prompt)
        prompt.focus()
        self._refresh_status("waiting for your answer")

    async def on_permission_prompt_answered(self, message: PermissionPrompt.Answered) -> None:
        await self._answer(message.call_id, (message.answer, message.note))
        self.prompt.focus()
        if self.busy:
            self._refresh_status("generating…")

    async def _answer(self, call_id: int, decision: Decision) -> None:
        answer, prompt = self._asks.pop(call_id, (None, None))
        if answer is not None and not answer.done():
            answer.set_result(decision)
        if prompt is not None:
            await prompt.remove()

    async def on_turn_finished(self, message: TurnFinished) -> None:
        await self._end_prose()
        for call_id in list(self._asks):  # a loop that ended without waiting for an answer
            await self._answer(call_id, ("reject", ""))
        self._cancel = None
        self.refresh_bindings()
        self._refresh_status(self._idle_state())
        self.prompt.focus()

    async def _end_prose(self) -> None:
        if self._assistant is not None:
            await self._assistant.finish()
            self._assistant = None

    # --- actions -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Esc / Ctrl+C only mean "stop" while something runs; otherwise the keys fall through to the
        # focused widget (Ctrl+C copies the selection in the input, as usual).
        if action == "interrupt":
            return self.busy
        return True

    async def action_interrupt(self) -> None:
        if self._cancel is None:
            return
        self._cancel.set()  # the loop polls it between tokens and while a Bash call runs
        for call_id in list(self._asks):
            await self._answer(call_id, ("reject", ""))
        self.prompt.focus()
        self._refresh_status("stopping…")

    async def action_quit(self) -> None:
        self._release_worker()
        self.exit()

    def on_unmount(self) -> None:
        # However the app ends (quit, crash, a test leaving run_test), unblock the turn worker: asyncio
        # waits for executor threads when the loop closes, so a worker stuck in ask() would hang the exit.
        self._release_worker()

    def _release_worker(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        for answer, _ in self._asks.values():
            if not answer.done():
                answer.set_result(("reject", ""))

    def on_key(self, event) -> None:
        # A key nobody handled (focus is on an expanded result, say): send the user back to the request
        # box with that character typed, instead of swallowing it. Not while a prompt waits for y/a/n.
        if event.is_printable and event.character and not self._asks and not isinstance(self.focused, Input):
            event.stop()
            self.prompt.focus()
            self.prompt.insert_text_at_cursor(event.character)

    def action_scroll_transcript(self, direction: int) -> None:
        if direction < 0:
            self.transcript.scroll_page_up()
        else:
            self.transcript.scroll_page_down()

    # --- helpers -----------------------------------------------------------------------------------

    async def _add(self, widget) -> None:
        await self.transcript.mount(widget)

    async def _add_error(self, message: str) -> None:
        """An error line; the same error again right after it (a model retrying the same malformed call)
        counts up on that line instead of adding another."""
        children = self.transcript.children
        last = children[-1] if children else None
        if isinstance(last, Notice) and last.kind == "error" and last.text == message:
            last.again()
        else:
            await self._add(Notice(message, "error"))

    def _idle_state(self) -> str:
        if self.agent is None:
            return "model failed to load" if self.load_error else "loading model…"
        return "compiling…" if self._warming else "ready"

    def _refresh_status(self, state: str | None = None) -> None:
        status = self.status
        if state is not None:
            status.state = state
        if self.agent is not None:
            status.context_used = int(self.agent.context_used)
            status.context_len = int(self.agent.context_len)
            status.tokens_per_second = float(self.agent.tokens_per_second)

    async def _draw_history(self, messages: list[dict[str, Any]]) -> None:
        """Draw a resumed conversation (DESIGN.md JSON). Edit diffs show old -> new: the files have
        moved on since, so re-reading them would show the wrong diff."""
        views: list[ToolCallView] = []
        for message in messages:
            if message["role"] == "user":
                await self._add(UserMessage(message["content"]))
                continue
            parts = message["content"]
            if isinstance(parts, str):
                parts = [{"type": "text", "text": parts}]
            for part in parts:
                if part["type"] == "text":
                    await self._add(AssistantMessage(part["text"]))
                elif part["type"] == "tool_call":
                    view = ToolCallView(ToolCall(-1 - len(views), part["name"], part["args"]), None)
                    views.append(view)
                    await self._add(view)
                elif part["type"] == "tool_result" and views:
                    await views[-1].set_result(part["ok"], part["output"])
        if messages:
            await self._add(Notice(f"resumed a conversation of {len(messages)} messages."))


def run_app(agent: Agent | Callable[[], Agent], *, model_name: str, workspace: Path | None = None,
            history_path: Path | None = None, notes: Sequence[str] = ()) -> None:
    """Run `nanocode chat` until the user quits. See the module docstring for the arguments."""
    NanocodeApp(agent, model_name=model_name, workspace=workspace, history_path=history_path,
                notes=notes).run()
