"""The inline question before a tool runs: y allow once, a always allow this tool for the session,
n reject. After n the prompt turns into a one-line note box, so a rejection can tell the model what to
do instead; Enter sends the note, and Enter on an empty box is a plain reject (so n, Enter is quick)."""
import math
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Static

from agent.events import ToolCall

KEYS = "[b]y[/b] allow · [b]a[/b] always allow $name this session · [b]n[/b] reject (+ note) · [b]Esc[/b] stop"
NOTE_KEYS = "type it and press [b]Enter[/b] (nothing + Enter = plain reject) · [b]Esc[/b] stop"
# The prompt takes the keyboard as it appears, so a user typing the next request at that moment would
# answer it with whatever y, a or n came next. Keys that arrive this soon after it appeared are not an
# answer to a question nobody has read yet (a person needs ~0.25 s just to notice a change on screen).
GRACE_S = 0.4


class PermissionPrompt(Widget, can_focus=True):
    BINDINGS = [
        Binding("y", "answer('allow')", "allow"),
        Binding("a", "answer('always')", "always"),
        Binding("n", "reject", "reject"),
    ]

    class Answered(Message):
        """The user decided. answer is allow, always or reject; note is the rejection note (may be '')."""

        def __init__(self, call_id: int, answer: str, note: str) -> None:
            super().__init__()
            self.call_id, self.answer, self.note = call_id, answer, note

    def __init__(self, call: ToolCall, run_note: str | None = None) -> None:
        """run_note: how the call will run (for Bash: sandboxed or not); None asks the app's agent."""
        super().__init__()
        self.call = call
        self.run_note = run_note
        self.answered = False
        self.shown_at = math.inf  # not on screen yet

    def on_mount(self) -> None:
        self.shown_at = time.monotonic()

    @property
    def armed(self) -> bool:
        """Whether y, a and n count yet (see GRACE_S)."""
        return time.monotonic() - self.shown_at >= GRACE_S

    def _run_note(self) -> str:
        if self.run_note is None:  # the agent's permission policy knows whether Bash runs sandboxed
            permissions = getattr(getattr(self.app, "agent", None), "permissions", None)
            self.run_note = permissions.run_note(self.call.name) if hasattr(permissions, "run_note") else ""
        return self.run_note

    def compose(self) -> ComposeResult:
        note = self._run_note()
        question = "Allow [b]$name[/b]?" + (" [dim]($note)[/dim]" if note else "")
        yield Static(Content.from_markup(question, name=self.call.name, note=note), classes="question")
        yield Static(Content.from_markup(KEYS, name=self.call.name), classes="keys")
        yield Input(placeholder="why not / what to do instead", id="note")

    def on_click(self) -> None:
        # Clicking anywhere on the prompt gives it the keys back (e.g. after the user scrolled away).
        if not self.has_class("-note"):
            self.focus()

    def action_answer(self, answer: str) -> None:
        if self.armed:
            self._finish(answer, "")

    def action_reject(self) -> None:
        if not self.armed:
            return
        self.add_class("-note")
        self.query_one(".question", Static).update(
            Content.from_markup("Reject [b]$name[/b]. Anything to tell the model?", name=self.call.name))
        self.query_one(".keys", Static).update(Content.from_markup(NOTE_KEYS))
        self.query_one("#note", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the app's own Input.Submitted handler is for requests, not notes
        self._finish("reject", event.value.strip())

    def _finish(self, answer: str, note: str) -> None:
        if not self.answered:
            self.answered = True
            self.post_message(self.Answered(self.call.call_id, answer, note))
