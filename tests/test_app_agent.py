"""The app driven by the real agent.loop.Agent: a scripted token source (agent.source.ScriptedSource)
stands in for the model, everything else is real (template, parser, permissions, tools on a tmp dir,
undo). Checks that the app and the loop agree on the interface, end to end."""
import time
from pathlib import Path

import pytest

from agent.app import NanocodeApp
from agent.loop import Agent
from agent.permissions import Permissions
from agent.source import ScriptedSource, encode_script
from agent.widgets.message import AssistantMessage, Notice
from agent.widgets.tool_call import ToolCallView
from agent.widgets.tool_output import ToolOutput
from test_app import SIZE, asking, idle, send, transcript, until

ORIGINAL = "def greet():\n    return 'hi'\n"
EDIT = ("I'll change the greeting.<|tool_call_start|>Edit<|tool_arg|>path<|tool_val|>hello.py"
        "<|tool_arg|>old_string<|tool_val|>'hi'<|tool_arg|>new_string<|tool_val|>'hello'<|tool_call_end|>")
BASH = "<|tool_call_start|>Bash<|tool_arg|>command<|tool_val|>rm -rf build<|tool_call_end|>"


def make_agent(tok, workspace: Path, replies: list[str], **source_options) -> tuple[Agent, ScriptedSource]:
    source = ScriptedSource(replies, tok, context_len=1024, chunk=2, **source_options)
    return Agent(source, tok, workspace, Permissions()), source


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text(ORIGINAL)
    return tmp_path


@pytest.mark.asyncio
async def test_real_agent_edit_approve_undo_reject_with_note_and_clear(tiny_tokenizer, workspace):
    agent, source = make_agent(tiny_tokenizer, workspace, [
        EDIT, "Done: it says **hello** now.<|assistant_end|>",
        BASH, "OK, I will leave build alone.<|assistant_end|>",
    ])
    # a factory, as `nanocode chat` passes it: the app comes up first, the agent is built in a worker
    app = NanocodeApp(lambda: agent, model_name="scripted", workspace=None)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: idle(app))
        assert app.workspace == workspace.resolve()  # taken from the agent
        await send(pilot, "greet with hello")
        await until(pilot, lambda: asking(app))
        from textual_diff_view import DiffView
        diff = transcript(app, ToolCallView)[0].query_one(DiffView)
        assert diff.code_modified.splitlines() == ORIGINAL.replace("'hi'", "'hello'").splitlines()
        await pilot.press("y")
        await until(pilot, lambda: idle(app))
        assert (workspace / "hello.py").read_text() == ORIGINAL.replace("'hi'", "'hello'")
        prose = [m.source for m in transcript(app, AssistantMessage)]
        assert prose == ["I'll change the greeting.", "Done: it says **hello** now."]
        assert transcript(app, ToolCallView)[0].query_one(ToolOutput).ok
        assert app.status.context_used == agent.context_used > 0 and app.status.context_len == 1024

        await send(pilot, "/undo")
        await until(pilot, lambda: transcript(app, Notice))
        assert (workspace / "hello.py").read_text() == ORIGINAL
        await send(pilot, "/undo")
        await until(pilot, lambda: transcript(app, Notice)[-1].kind == "error")
        assert "nothing to undo" in str(transcript(app, Notice)[-1].render())

        await send(pilot, "clean up")
        await until(pilot, lambda: asking(app))
        await pilot.press("n", *"keep build", "enter")
        await until(pilot, lambda: idle(app))
        assert (workspace / "hello.py").exists()
        # the note reached the model: it is in the prompt of the next generation
        assert "the user declined this call and said: keep build" in tiny_tokenizer.decode(source.prompts[-1])
        bash = transcript(app, ToolCallView)[-1]
        # the decision line says it; the declined-call result (the model's copy) is not repeated under it
        assert bash.decision == "reject" and str(bash.query_one(".decision").render()) == "rejected: keep build"
        assert not bash.query(ToolOutput)

        await send(pilot, "/clear")
        await until(pilot, lambda: not agent.messages and not transcript(app, ToolCallView))


@pytest.mark.asyncio
async def test_real_agent_always_allow_and_escape_interrupt(tiny_tokenizer, workspace):
    read = "<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>hello.py<|tool_call_end|>"
    long_reply = "la " * 400 + "<|assistant_end|>"
    agent, source = make_agent(tiny_tokenizer, workspace, [read, read, "Read it twice.<|assistant_end|>",
                                                           long_reply], delay=0.01)
    app = NanocodeApp(agent, model_name="scripted", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "read hello.py")
        await until(pilot, lambda: asking(app))
        await pilot.press("a")
        await until(pilot, lambda: idle(app))
        first, second = transcript(app, ToolCallView)
        assert (first.decision, second.decision) == ("always", "auto")
        assert "return 'hi'" in second.query_one(ToolOutput).output

        await send(pilot, "sing")
        await until(pilot, lambda: len(transcript(app, AssistantMessage)) == 2
                    and transcript(app, AssistantMessage)[-1].source.count("la") > 3)
        start = time.monotonic()
        await pilot.press("escape")
        await until(pilot, lambda: idle(app), timeout=1.0)
        assert time.monotonic() - start < 1.0
        assert str(transcript(app, Notice)[-1].render()) == "stopped."
        assert agent.messages[-1]["content"][0]["text"].count("la") < 400

        # /clear forgets the "always" answer, and says so: the next Read asks again
        source.replies.append(encode_script(tiny_tokenizer, read))
        await send(pilot, "/clear")
        await until(pilot, lambda: transcript(app, Notice) and "cleared" in str(transcript(app, Notice)[-1].render()))
        assert str(transcript(app, Notice)[-1].render()) == ('conversation cleared; Read will ask again ("always '
                                                             'allow" lasts one conversation).')
        assert agent.permissions.always == set()
        await send(pilot, "read it again")
        await until(pilot, lambda: asking(app))


@pytest.mark.asyncio
async def test_esc_at_a_question_is_one_line_and_malformed_calls_are_short(tiny_tokenizer, workspace):
    fetch = "<|tool_call_start|>Fetch<|tool_arg|>url<|tool_val|>x<|tool_call_end|>"
    agent, _ = make_agent(tiny_tokenizer, workspace, [BASH, fetch, fetch, "sorry.<|assistant_end|>"])
    app = NanocodeApp(agent, model_name="scripted", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "clean up")
        await until(pilot, lambda: asking(app))
        await pilot.press("escape")
        await until(pilot, lambda: idle(app))
        (view,) = transcript(app, ToolCallView)
        assert str(view.query_one(".decision").render()) == "not run: you stopped the turn"
        assert view.query_one(".decision").has_class("-reject")
        assert not view.query(ToolOutput) and not transcript(app, Notice)  # no result repeating it, no "stopped."

        await send(pilot, "fetch it")
        await until(pilot, lambda: idle(app) and transcript(app, AssistantMessage))
        (error,) = [n for n in transcript(app, Notice) if n.kind == "error"]
        assert str(error.render()) == "the model wrote a malformed tool call: there is no tool called 'Fetch' (×2)"


@pytest.mark.asyncio
async def test_escape_stops_a_running_bash_call_within_a_second(tiny_tokenizer, workspace):
    sleep = "<|tool_call_start|>Bash<|tool_arg|>command<|tool_val|>sleep 30<|tool_call_end|>"
    agent, _ = make_agent(tiny_tokenizer, workspace, [sleep])
    app = NanocodeApp(agent, model_name="scripted", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "wait a while")
        await until(pilot, lambda: asking(app))
        await pilot.press("y")
        await until(pilot, lambda: app.status.state == "generating…")
        await pilot.pause(0.3)  # let bash start
        assert app.busy
        start = time.monotonic()
        await pilot.press("escape")
        await until(pilot, lambda: idle(app), timeout=2.0)
        assert time.monotonic() - start < 1.0
        result = transcript(app, ToolCallView)[0].query_one(ToolOutput)
        assert not result.ok
