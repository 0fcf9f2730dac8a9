"""A tool's result, collapsed to its first lines; the rest sits in a Collapsible (click or Enter)."""
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Collapsible, Static

PREVIEW_LINES = 3


class ToolOutput(Vertical):
    def __init__(self, ok: bool, output: str) -> None:
        super().__init__(classes="-ok" if ok else "-error")
        self.ok = ok
        self.output = output

    def compose(self) -> ComposeResult:
        lines = self.output.rstrip("\n").splitlines() or ["(no output)"]
        # Content(...) is literal text: tool output full of [brackets] must not be read as markup.
        # One hidden line is not worth a fold: show up to PREVIEW_LINES + 1 lines in full.
        shown = len(lines) if len(lines) <= PREVIEW_LINES + 1 else PREVIEW_LINES
        yield Static(Content("\n".join(lines[:shown])), classes="preview")
        rest = lines[shown:]
        if rest:
            yield Collapsible(Static(Content("\n".join(rest)), classes="rest"),
                              title=f"{len(rest)} more lines", collapsed=True)
