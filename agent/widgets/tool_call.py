"""One tool call in the transcript: a header naming the tool and its main argument, a body (Edit as a
coloured diff from textual-diff-view, Bash as the highlighted command), then how it was decided and,
once it ran, its output (ToolOutput)."""
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.highlight import highlight
from textual.widgets import Static

from agent.events import ToolCall
from agent.widgets.tool_output import ToolOutput

# Files larger than this are not read for the diff preview; it falls back to old_string -> new_string.
MAX_PREVIEW_BYTES = 1_000_000
# Unchanged lines shown around a change (DiffView groups its hunks with the same context).
DIFF_CONTEXT = 3

DECISIONS = {
    "allow": "allowed once",
    "always": "allowed for this session",
    "auto": "allowed (pre-approved)",
    "reject": "rejected",
    "stopped": "not run: you stopped the turn",
}


def summary(call: ToolCall) -> str:
    """The one-line gist of a call: what a user scanning the transcript needs to recognise it."""
    a = call.args
    if call.name == "Read":
        span = "".join(f" {k}={a[k]}" for k in ("offset", "limit") if a.get(k))
        return f"{a.get('path', '?')}{span}"
    if call.name == "Edit":
        return a.get("path", "?") + (" (replace all)" if a.get("replace_all", "").lower() == "true" else "")
    if call.name == "Grep":
        where = " ".join(v for v in (a.get("path", ""), a.get("glob", "")) if v)
        return f"{a.get('pattern', '?')!r}" + (f" in {where}" if where else "")
    if call.name == "Bash":
        return ""  # the command is the body
    return ", ".join(f"{k}={v!r}" for k, v in a.items())


def edit_texts(args: dict[str, str], workspace: Path | None) -> tuple[str, str, str]:
    """(path, before, after) for an Edit call. With a workspace, the diff is of the whole file as the
    edit would leave it (so the diff has real line numbers and context); without one (a resumed session,
    where the file has changed since), or when the file can't be read or old_string doesn't match, it is
    old_string -> new_string."""
    path, old, new = args.get("path", ""), args.get("old_string", ""), args.get("new_string", "")
    if workspace is None or not path:
        return path, old, new
    root = workspace.resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root):  # the tool will refuse it; the preview must not read it either
        return path, old, new
    if not file.exists():
        return path, "", new if old == "" else old
    try:
        if file.stat().st_size > MAX_PREVIEW_BYTES:
            return path, old, new
        before = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return path, old, new
    if old == "" or old not in before:
        return path, old, new
    count = -1 if args.get("replace_all", "").lower() == "true" else 1
    return path, before, before.replace(old, new, count)


def focus_diff(before: str, after: str, context: int = DIFF_CONTEXT) -> tuple[str, str]:
    """Blank the unchanged lines above the change and drop those below it, except `context` lines.
    DiffView highlights both texts in full on the UI thread (measured: 3.3 s for a 5,000-line file on
    this 2-core CPU); blanked lines keep the line numbers right, cost nothing, and are never shown
    (they are identical on both sides, outside the hunks' context)."""
    a, b = before.splitlines(), after.splitlines()
    shorter = min(len(a), len(b))
    head = 0
    while head < shorter and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < shorter - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    start = max(0, head - context)
    keep_tail = max(0, tail - context)
    blank = [""] * start
    return ("\n".join(blank + a[start:len(a) - keep_tail]), "\n".join(blank + b[start:len(b) - keep_tail]))


class ToolCallView(Vertical):
    def __init__(self, call: ToolCall, workspace: Path | None) -> None:
        super().__init__(classes=f"-{call.name.lower()}")
        self.call = call
        self.workspace = workspace
        self.decision = ""
        self.result: ToolOutput | None = None

    def compose(self) -> ComposeResult:
        header = Content.assemble(("● ", "$accent"), (self.call.name, "bold"), "  ", summary(self.call))
        body = None
        if self.call.name == "Edit":
            # Imported here: the diff library is only needed once the model edits something.
            from textual_diff_view import DiffView

            path, before, after = edit_texts(self.call.args, self.workspace)
            body = DiffView(path, path, *focus_diff(before, after), split=False, annotations=True)
            added, removed = body.counts  # shown in our header; the library's own title is hidden (CSS)
            header += Content.assemble("  ", (f"+{added}", "$text-success"), " ", (f"-{removed}", "$text-error"))
        elif self.call.name == "Bash":
            body = Static(highlight(self.call.args.get("command", ""), language="bash"), classes="command")
        yield Static(header, classes="header")
        if body is not None:
            yield body
        yield Static("", classes="decision")

    def set_decision(self, decision: str, note: str = "") -> None:
        self.decision = decision
        text = DECISIONS.get(decision, decision) + (f": {note}" if note else "")
        label = self.query_one(".decision", Static)
        label.update(Content(text))
        label.set_class(self.rejected, "-reject")
        label.display = True

    @property
    def rejected(self) -> bool:
        return self.decision in ("reject", "stopped")

    async def set_result(self, ok: bool, output: str) -> None:
        self.result = ToolOutput(ok, output)
        await self.mount(self.result)
