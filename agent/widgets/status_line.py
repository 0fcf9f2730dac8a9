"""One line under the input: model, context used, generation speed, the project memory the model reads
(AGENTS.md) and what the app is doing now."""
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


class StatusLine(Widget):
    model: reactive[str] = reactive("")
    state: reactive[str] = reactive("loading model…")
    context_used: reactive[int] = reactive(0)
    context_len: reactive[int] = reactive(0)
    tokens_per_second: reactive[float] = reactive(0.0)
    memory: reactive[str] = reactive("")  # the AGENTS.md files in the prompt, if any

    def render(self) -> Content:
        if self.context_len:
            percent = 100 * self.context_used / self.context_len
            context = f"{_tokens(self.context_used)}/{_tokens(self.context_len)} ({percent:.0f}%)"
        else:
            context = "—"
        speed = f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second else "— tok/s"
        # Variables ($model, ...) are substituted as plain text, so a model path with brackets stays literal.
        memory = " │ $memory" if self.memory else ""
        return Content.from_markup(f"[b]$model[/b] │ context $context │ $speed{memory} │ [i]$state[/i]",
                                   model=self.model or "no model", context=context, speed=speed,
                                   memory=self.memory, state=self.state)
