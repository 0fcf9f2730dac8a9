"""`nanocode chat --plain` (agent/repl.py) driven through prompt-toolkit pipe input, with the real loop over a
scripted token source and the real tools."""
import io

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from agent.loop import Agent
from agent.permissions import Permissions
from agent.repl import Repl, parse_answer
from agent.source import ScriptedSource

EDIT = ("<|tool_call_start|>Edit<|tool_arg|>path<|tool_val|>a.py<|tool_arg|>old_string<|tool_val|>(argv):"
        "<|tool_arg|>new_string<|tool_val|>(args):<|tool_call_end|>")
BASH = "<|tool_call_start|>Bash<|tool_arg|>command<|tool_val|>rm a.py<|tool_call_end|>"
ORIGINAL = "def parse_args(argv):\n    return argv\n"


def run_repl(tok, ws, replies, keys: str, history=None) -> tuple[str, Agent, ScriptedSource]:
    source = ScriptedSource(replies, tok, chunk=3)
    agent = Agent(source, tok, ws, Permissions())
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        repl = Repl(lambda: agent, model_name="tiny", workspace=ws, notes=["every tool call asks first"],
                    history_path=history, console=Console(file=out, width=120), input=pipe, output=DummyOutput())
        repl.run()
    return out.getvalue(), agent, source


@pytest.mark.parametrize("text, decision", [
    ("y", ("allow", "")), ("YES", ("allow", "")), ("a", ("always", "")), ("n", ("reject", "")),
    ("n not that file", ("reject", "not that file")), ("no   ", ("reject", "")), ("maybe", None), ("y z", None),
])
def test_parse_answer(text, decision):
    assert parse_answer(text) == decision


def test_repl_turn_with_approval_rejection_note_undo_and_commands(tiny_tokenizer, tmp_path):
    (tmp_path / "a.py").write_text(ORIGINAL)
    history = tmp_path / "history"
    out, agent, source = run_repl(tiny_tokenizer, tmp_path, [
        "renaming " + EDIT, BASH, "renamed it.<|assistant_end|>"],
        "rename argv\nwhat\ny\nn\nplease keep it\n/show 1\n/undo\n/undo\n/nope\n/exit\n", history)
    assert "tiny" in out and "every tool call asks first" in out
    assert "● Edit(path=a.py, old_string=(argv):, new_string=(args):)" in out
    assert "answer y, a, n" in out  # 'what' was not an answer; it asked again
    assert "Edited a.py" in out and "+def parse_args(args):" in out  # the diff
    assert f"allow Bash? ({Permissions().run_note('Bash')})" in out  # whether it would run sandboxed
    assert "allow Edit? y yes" in out  # nothing to say about the other tools
    assert "rejected: please keep it" in out
    assert "the user declined this call and said: please keep it" in tiny_tokenizer.decode(source.prompts[-1])
    assert "renamed it." in out and "context " in out and "tok/s" in out
    assert "Undid the edit of a.py" in out and "nothing to undo" in out
    assert (tmp_path / "a.py").read_text() == ORIGINAL
    assert "unknown command /nope" in out
    # requests (not permission answers) are kept in the history file shared with the app
    assert history.read_text().splitlines() == ["rename argv", "/show 1", "/undo", "/nope", "/exit"]  # repeats once


def test_repl_reports_a_model_that_failed_to_load(tmp_path):
    out = io.StringIO()

    def broken():
        raise RuntimeError("no model found; train one with `nanocode train speedrun --preset cpu`")
    with create_pipe_input() as pipe:
        pipe.send_text("hello\n/clear\n")
        pipe.close()
        Repl(broken, model_name="x", workspace=tmp_path, console=Console(file=out, width=200), input=pipe,
             output=DummyOutput()).run()  # ends at end of input (Ctrl+D)
    text = out.getvalue()
    assert "no model is loaded: no model found; train one with `nanocode train speedrun --preset cpu`" in text
