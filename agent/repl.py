"""`nanocode chat --plain`: the agent loop in a prompt-toolkit REPL with rich output, for terminals (and
people) that do not want a full-screen app.

The model loads in a background thread while the prompt is already up. A turn runs in a worker thread
(agent.loop.threaded); the main thread prints its events and asks the permission questions. While a turn
runs, Esc or Ctrl+C stops it (generation within a chunk of tokens, a Bash command within ~50 ms).
"""
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import History
from prompt_toolkit.keys import Keys
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text

from agent.events import Error, Permission, TextDelta, ToolCall, ToolResult, TurnEnd
from agent.loop import threaded
from agent.permissions import cleared_message

HELP = """\
[bold]Commands[/bold]
  /help        this help
  /show [N]    the full output of tool call N (default: the last one)
  /undo        revert the last Edit made in this session
  /clear       forget the conversation (the model starts fresh)
  /exit        quit (also Ctrl+D)
[bold]Permission answers[/bold]
  y  allow once    a  allow this tool for the rest of the session
  n  reject        n <note>  reject and tell the model why
[bold]Keys[/bold]  Esc or Ctrl+C stops the model or a running command"""

END_REASONS = {
    "interrupted": "stopped.",
    "max_steps": "stopped: the turn reached its step limit. Say 'continue' to go on.",
    "repeated_failure": "stopped: the same tool call kept failing.",
    "context": "stopped: the conversation no longer fits the model's context. /clear starts over.",
    "length": "stopped: the reply hit its length limit.",
    "error": "the turn ended with an error (see above).",
}
PREVIEW_LINES = 12


class LineHistory(History):
    """Input history shared with the Textual app: one request per line, appended."""

    def __init__(self, path: Path | None):
        super().__init__()
        self.path = path

    def load_history_strings(self):
        if self.path is None or not self.path.is_file():
            return []
        try:
            return self.path.read_text(encoding="utf-8").splitlines()[-1000:][::-1]  # newest first
        except (OSError, UnicodeDecodeError):
            return []

    def store_string(self, string: str) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(string.replace("\n", " ") + "\n")
        except OSError:
            pass  # history is a convenience; never stop a session over it


class KeyWatcher:
    """While a turn runs on a terminal, puts stdin in raw mode and turns Esc / Ctrl+C into `cancel`.
    Raw mode also keeps keys typed meanwhile from echoing into the model's output. Paused around
    permission questions (prompt-toolkit then owns the terminal)."""

    def __init__(self, cancel: threading.Event, enabled: bool):
        self.cancel, self.input, self._raw = cancel, None, None
        if enabled:
            from prompt_toolkit.input import create_input
            self.input = create_input()

    def __enter__(self):
        self._start()
        return self

    def __exit__(self, *exc):
        self._stop()

    def _start(self):
        if self.input is not None and self._raw is None:
            self._raw = self.input.raw_mode()
            self._raw.__enter__()

    def _stop(self):
        if self._raw is not None:
            self._raw.__exit__(None, None, None)
            self._raw = None

    @contextmanager
    def paused(self):
        self._stop()
        try:
            yield
        finally:
            self._start()

    def poll(self) -> None:
        if self._raw is None:
            return
        keys = self.input.read_keys() + self.input.flush_keys()  # flush: a lone Esc is not a sequence start
        if any(k.key in (Keys.Escape, Keys.ControlC) for k in keys):
            self.cancel.set()


def parse_answer(text: str) -> tuple[str, str] | None:
    """'y' / 'a' / 'n' / 'n <note>' (and the full words) -> a Decision; None when it is none of those."""
    word, _, rest = text.strip().partition(" ")
    word = word.lower()
    if word in ("y", "yes") and not rest:
        return "allow", ""
    if word in ("a", "always") and not rest:
        return "always", ""
    if word in ("n", "no"):
        return "reject", rest.strip()
    return None


def describe_call(call: ToolCall, width: int = 80) -> str:
    def short(v: str) -> str:
        v = v.replace("\n", "\\n")
        return v if len(v) <= width else v[:width - 1] + "…"
    return f"{call.name}(" + ", ".join(f"{k}={short(v)}" for k, v in call.args.items()) + ")"


class Repl:
    def __init__(self, agent, *, model_name: str, workspace: Path, notes: list[str] = (),
                 history_path: Path | None = None, console: Console | None = None, input=None, output=None):
        """agent: an Agent, or a zero-argument callable that builds one (run in the background while the
        prompt is already up). input/output: prompt-toolkit input/output (tests pass pipes)."""
        self.console = console or Console(highlight=False)
        self.model_name, self.workspace, self.notes = model_name, workspace, list(notes)
        self.prompt = PromptSession(history=LineHistory(history_path), input=input, output=output,
                                    bottom_toolbar=self._toolbar, refresh_interval=0.5)
        self.answers = PromptSession(input=input, output=output)  # permission answers stay out of the history
        self.tty = input is None and sys.stdin.isatty()
        self.outputs: dict[int, ToolResult] = {}
        self._at_line_start = True
        self.agent, self.load_error = None, None
        self._memory_shown = False
        self._loaded, self._warm = threading.Event(), threading.Event()
        if callable(agent) and not hasattr(agent, "run_turn"):
            threading.Thread(target=self._load, args=(agent,), name="nanocode-load", daemon=True).start()
        else:
            self.agent = agent
            self._loaded.set()
            self._warm.set()

    # --- start-up ---------------------------------------------------------------------------------

    def _load(self, make_agent: Callable) -> None:
        try:
            self.agent = make_agent()
        except Exception as e:  # shown when the user sends a request
            self.load_error = str(e) or type(e).__name__
        finally:
            self._loaded.set()
        try:
            if self.agent is not None:
                self.agent.warm_up()
        except Exception:
            pass  # warm-up only saves time; the first real request compiles what it needs
        finally:
            self._warm.set()

    def _toolbar(self) -> str:
        """The status line under the prompt."""
        if not self._loaded.is_set():
            state = "loading the model…"
        elif self.agent is None:
            state = "no model loaded"
        elif not self._warm.is_set():
            state = "compiling…"
        else:
            a = self.agent
            state = f"ready · context {a.context_used}/{a.context_len}"
            if a.tokens_per_second:
                state += f" · {a.tokens_per_second:.1f} tok/s"
        return f" {self.model_name} · {state} "

    def _wait_for_agent(self):
        if not self._loaded.is_set():
            self.console.print("[dim]loading the model…[/dim]")
            try:
                while not self._loaded.wait(0.1):
                    pass
            except KeyboardInterrupt:
                return None
        if self.agent is None:
            self.console.print(f"[red]no model is loaded: {escape(self.load_error or 'unknown error')}[/red]")
        elif not self._memory_shown:  # read with the model: shown before its first reply
            self._memory_shown = True
            if (memory := getattr(self.agent, "memory", None)) is not None:
                self.console.print(f"[{'red' if memory.cut else 'dim'}]{escape(memory.notice())}[/]")
        return self.agent

    # --- the read-eval-print loop -----------------------------------------------------------------

    def run(self) -> None:
        self.console.print(f"[bold]nanocode[/bold] · {escape(self.model_name)} · {escape(str(self.workspace))}")
        for note in self.notes:
            self.console.print(f"[dim]{escape(note)}[/dim]")
        self.console.print("[dim]/help for commands · Esc or Ctrl+C stops the model · Ctrl+D quits[/dim]")
        while True:
            try:
                text = self.prompt.prompt("› ")
            except KeyboardInterrupt:
                self.console.print("[dim](Ctrl+D or /exit quits)[/dim]")
                continue
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not self.command(text):
                    break
                continue
            agent = self._wait_for_agent()
            if agent is not None:
                if not self._warm.is_set():
                    self.console.print("[dim]the model is still compiling; the reply starts when it is done[/dim]")
                self.turn(agent, text)

    def command(self, text: str) -> bool:
        """Runs a slash command; False means quit."""
        name, _, arg = text.partition(" ")
        name = name.lower()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            self.console.print(HELP)
        elif name == "/show":
            self._show_output(arg.strip())
        elif name in ("/undo", "/clear"):
            if not self._loaded.is_set() or self.agent is None:
                self.console.print("[red]no model is loaded yet[/red]")
            elif name == "/clear":
                reset = self.agent.clear() or []
                self.outputs.clear()
                self.console.print(f"[dim]{escape(cleared_message(reset))}[/dim]")
            else:
                try:
                    self.console.print(escape(self.agent.undo()))
                except Exception as e:
                    self.console.print(f"[red]undo failed: {escape(str(e))}[/red]")
        else:
            self.console.print(f"[red]unknown command {escape(name)}; /help lists the commands[/red]")
        return True

    def _show_output(self, arg: str) -> None:
        if not self.outputs:
            self.console.print("[dim]no tool has run yet[/dim]")
            return
        if arg and not arg.isdigit():
            self.console.print("[red]/show takes a call number, e.g. /show 3[/red]")
            return
        result = self.outputs.get(int(arg)) if arg else self.outputs[max(self.outputs)]
        if result is None:
            self.console.print(f"[red]no tool call {arg}; calls so far: {', '.join(map(str, self.outputs))}[/red]")
            return
        self.console.print(Text(result.output), soft_wrap=True)

    def turn(self, agent, text: str) -> None:
        cancel = threading.Event()
        with KeyWatcher(cancel, self.tty) as keys:
            def ask(call: ToolCall):
                with keys.paused():
                    return self.ask(call)
            for event in threaded(agent, text, ask, cancel, poll=keys.poll):
                self.show(event)
        self._status(agent)

    def ask(self, call: ToolCall) -> tuple[str, str]:
        self._newline()
        permissions = getattr(self.agent, "permissions", None)
        note = permissions.run_note(call.name) if hasattr(permissions, "run_note") else ""
        note = f" [yellow]({escape(note)})[/yellow]" if note else ""
        self.console.print(f"[bold yellow]allow {escape(call.name)}?[/bold yellow]{note} [dim]y yes · a always "
                           f"{escape(call.name)} · n no · n <note> no, and tell the model why[/dim]")
        while True:
            try:
                decision = parse_answer(self.answers.prompt("  answer: "))
            except EOFError:
                return "reject", ""
            if decision is not None:
                if decision[0] == "reject" and not decision[1]:
                    try:
                        note = self.answers.prompt("  note for the model (Enter for none): ")
                    except EOFError:
                        note = ""
                    decision = ("reject", note.strip())
                return decision
            self.console.print("[red]  answer y, a, n, or n followed by a note[/red]")

    # --- printing events --------------------------------------------------------------------------

    def _newline(self) -> None:
        if not self._at_line_start:
            self.console.print()
            self._at_line_start = True

    def show(self, event) -> None:
        c = self.console
        if isinstance(event, TextDelta):
            c.print(Text(event.text), end="", soft_wrap=True)
            self._at_line_start = event.text.endswith("\n")
        elif isinstance(event, ToolCall):
            self._newline()
            c.print(Text.assemble(("● ", "cyan"), (describe_call(event), "bold")), soft_wrap=True)
        elif isinstance(event, Permission):
            if event.decision == "auto":
                c.print("  [dim]pre-approved[/dim]")
            elif event.decision == "reject":
                c.print("  [red]rejected[/red]" + (f"[dim]: {escape(event.note)}[/dim]" if event.note else ""))
        elif isinstance(event, ToolResult):
            self.outputs[event.call_id] = event
            self._show_result(event)
        elif isinstance(event, Error):
            self._newline()
            style = "dim" if event.kind == "context_trimmed" else "yellow"
            c.print(Text(f"! {event.message}", style=style), soft_wrap=True)
        elif isinstance(event, TurnEnd):
            self._newline()
            if event.reason != "done":
                c.print(f"[yellow]{escape(END_REASONS.get(event.reason, f'the turn ended: {event.reason}.'))}"
                        "[/yellow]")

    def _show_result(self, event: ToolResult) -> None:
        lines = event.output.splitlines() or [""]
        shown, more = lines[:PREVIEW_LINES], len(lines) - PREVIEW_LINES
        if event.name == "Edit" and event.ok and len(lines) > 1:  # a summary line, then a unified diff
            self.console.print(Text("  ⎿ " + lines[0], style="green"))
            self.console.print(Syntax("\n".join(lines[1:PREVIEW_LINES]), "diff", theme="ansi_dark",
                                      background_color="default"))
        else:
            style = "dim" if event.ok else "red"
            for i, line in enumerate(shown):
                self.console.print(Text(("  ⎿ " if i == 0 else "    ") + line, style=style), soft_wrap=True)
        if more > 0:
            self.console.print(f"    [dim]… {more} more lines (/show {event.call_id})[/dim]")

    def _status(self, agent) -> None:
        self.console.print(f"[dim]context {agent.context_used}/{agent.context_len} tokens · "
                           f"{agent.tokens_per_second:.1f} tok/s[/dim]")


def run_repl(agent, *, model_name: str, workspace: Path, notes: list[str] = (),
             history_path: Path | None = None) -> None:
    Repl(agent, model_name=model_name, workspace=workspace, notes=notes, history_path=history_path).run()
