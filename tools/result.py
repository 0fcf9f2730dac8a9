"""What a tool call returns: ToolResult; FileChange for what an Edit changed; ToolError for expected failures."""
from dataclasses import dataclass


@dataclass(frozen=True)
class FileChange:
    """One file an Edit wrote: enough for the app to show a diff and for /undo to put the file back.
    `before` is the whole previous text (None when Edit created the file); `after` the whole new text;
    `encoding` how both were decoded ("utf-8", or "latin-1" for files that are not valid UTF-8);
    `diff` the full unified diff. Plain strings only, so dataclasses.asdict() is JSON-ready."""
    path: str
    before: str | None
    after: str
    encoding: str
    diff: str


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    output: str
    change: FileChange | None = None  # set by a successful Edit, None otherwise


class ToolError(Exception):
    """An expected failure (bad argument, missing file, escape attempt...). Its message goes to the model as an
    ok=False result, so it must say what went wrong and how to recover."""
