"""The request box: one line, Enter sends, Up/Down walk through earlier requests (shell-style: the line
being typed is kept as a draft and comes back after the newest entry)."""
from textual.binding import Binding
from textual.widgets import Input


class PromptInput(Input):
    BINDINGS = [
        Binding("up", "history_previous", "previous request", show=False),
        Binding("down", "history_next", "next request", show=False),
    ]

    def __init__(self, history: list[str] | None = None, **kwargs) -> None:
        # select_on_focus off: focus comes back here after every permission prompt, and a half-typed
        # request must not be selected (the next key would replace it).
        super().__init__(placeholder="Ask nanocode…  (/help for commands)", select_on_focus=False, **kwargs)
        self.history: list[str] = list(history or [])
        self._index = len(self.history)  # == len(history) means "the draft", not a history entry
        self._draft = ""

    def remember(self, text: str) -> None:
        """Add a sent request to the history (consecutive duplicates are kept once) and reset the walk."""
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._index = len(self.history)
        self._draft = ""

    def _show(self, text: str) -> None:
        self.value = text
        self.cursor_position = len(text)

    def action_history_previous(self) -> None:
        if self._index == 0:
            return
        if self._index == len(self.history):
            self._draft = self.value
        self._index -= 1
        self._show(self.history[self._index])

    def action_history_next(self) -> None:
        if self._index >= len(self.history):
            return
        self._index += 1
        self._show(self._draft if self._index == len(self.history) else self.history[self._index])
