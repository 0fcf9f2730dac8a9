"""Transcript entries: what the user typed, what the assistant wrote (markdown, streamed), and notices
from the app itself (help, undo results, errors)."""
from textual.content import Content
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream


class UserMessage(Static):
    """A request as the user typed it. Shown literally: square brackets are text, not markup."""

    def __init__(self, text: str) -> None:
        super().__init__(Content(text))
        self.text = text


class AssistantMessage(Markdown):
    """Assistant prose, rendered as markdown while it streams. A MarkdownStream batches fragments that
    arrive faster than the widget can re-parse (one token at a time is far faster than that)."""

    def __init__(self, markdown: str = "") -> None:
        super().__init__(markdown)
        self._stream: MarkdownStream | None = None

    async def write(self, fragment: str) -> None:
        if self._stream is None:
            self._stream = self.get_stream(self)
        await self._stream.write(fragment)

    async def finish(self) -> None:
        """Flush what is still queued; call once the prose is complete (a tool call or the turn end)."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None


class Notice(Static):
    """A line from the app, not the model: `kind` is info, error or help (a CSS class picks the colour)."""

    def __init__(self, content: str | Content, kind: str = "info") -> None:
        super().__init__(Content(content) if isinstance(content, str) else content, classes=f"-{kind}")
        self.kind = kind
        self.text = content if isinstance(content, str) else None
        self.repeats = 1

    def again(self) -> None:
        """The same notice once more, counted on this line (a model retrying the same malformed call)."""
        self.repeats += 1
        self.update(Content(f"{self.text} (×{self.repeats})"))
