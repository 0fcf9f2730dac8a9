"""Pilot tests of the `nanocode chat` Textual app, driven by a scripted agent with the same interface as
agent.loop.Agent (the real Agent is exercised in test_app_agent.py). Each test types into the real app,
presses the real keys, and checks both what the user sees and what the agent received."""
import threading
import time
from pathlib import Path

import pytest

from agent.app import NanocodeApp
from agent.events import Error, Permission, TextDelta, ToolCall, ToolResult, TurnEnd
from agent.widgets.message import AssistantMessage, Notice, UserMessage
from agent.widgets.permission_prompt import GRACE_S, PermissionPrompt
from agent.widgets.prompt_input import PromptInput
from agent.widgets.tool_call import ToolCallView, edit_texts, focus_diff
from agent.widgets.tool_output import ToolOutput

SIZE = (100, 36)


class ScriptedAgent:
    """Plays one script per turn. Steps: ("text", [fragments]), ("call", name, args, output),
    ("spin",) = stream prose until cancelled. Edit calls really edit files under `workspace` so /undo
    has something to revert. Records every decision `ask` returned."""

    def __init__(self, workspace: Path, turns: list[list[tuple]], messages: list[dict] | None = None):
        self.workspace = workspace
        self.turns = list(turns)
        self.messages: list[dict] = list(messages or [])
        self.context_used, self.context_len, self.tokens_per_second = 0, 2048, 0.0
        self.decisions: list[tuple[str, str]] = []
        self.always: set[str] = set()
        self.undo_stack: list[tuple[Path, str]] = []
        self.cleared = 0
        self.turns_finished = 0
        self._next_id = 0

    def run_turn(self, user_text, ask, cancel=None):
        try:
            yield from self._turn(user_text, ask, cancel or threading.Event())
        finally:
            self.turns_finished += 1

    def _turn(self, user_text, ask, cancel):
        self.messages.append({"role": "user", "content": user_text})
        for step in self.turns.pop(0):
            if cancel.is_set():
                yield TurnEnd("interrupted")
                return
            if step[0] == "text":
                for fragment in step[1]:
                    self.context_used += 1
                    self.tokens_per_second = 42.5
                    yield TextDelta(fragment)
            elif step[0] == "spin":
                while not cancel.is_set():
                    yield TextDelta("la ")
                    time.sleep(0.01)
            elif step[0] == "call":
                _, name, args, output = step
                self._next_id += 1
                call = ToolCall(self._next_id, name, args)
                yield call
                if name in self.always:
                    yield Permission(call.call_id, "auto")
                else:
                    answer, note = ask(call)
                    self.decisions.append((answer, note))
                    yield Permission(call.call_id, answer, note)
                    if answer == "always":
                        self.always.add(name)
                    if answer == "reject":
                        yield ToolResult(call.call_id, name, False, f"rejected by the user. {note}".strip())
                        continue
                if name == "Edit":
                    file = self.workspace / args["path"]
                    before = file.read_text()
                    self.undo_stack.append((file, before))
                    file.write_text(before.replace(args["old_string"], args["new_string"], 1))
                yield ToolResult(call.call_id, name, True, output)
        yield TurnEnd("interrupted" if cancel.is_set() else "done")

    def undo(self) -> str:
        if not self.undo_stack:
            raise RuntimeError("nothing to undo: no Edit has been made in this session")
        file, before = self.undo_stack.pop()
        file.write_text(before)
        return f"reverted the last edit of {file.name}"

    def clear(self) -> None:
        self.cleared += 1
        self.messages.clear()


async def until(pilot, condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


async def send(pilot, text: str) -> None:
    pilot.app.query_one(PromptInput).value = text
    await pilot.press("enter")


def transcript(app, kind):
    return list(app.query_one("#transcript").query(kind))


def asking(app) -> bool:
    """A permission prompt is up, has the keys (it is mounted a moment before it takes focus) and takes
    answers (keys in its first GRACE_S are not answers)."""
    return isinstance(app.focused, PermissionPrompt) and app.focused.armed


def idle(app) -> bool:
    return not app.busy and app.status.state == "ready"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text("def greet():\n    return 'hi'\n\nprint(greet())\n")
    return tmp_path


@pytest.mark.asyncio
async def test_request_streams_markdown_and_approve_runs_the_call(workspace):
    output = "\n".join(f"line {i}" for i in range(10))
    agent = ScriptedAgent(workspace, [[
        ("text", ["Let me **look** ", "at it.\n"]),
        ("call", "Read", {"path": "hello.py"}, output),
        ("text", ["It greets ", "you."]),
    ]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "what does hello.py do?")
        await until(pilot, lambda: asking(app))
        assert app.focused is app.query_one(PermissionPrompt)
        assert app.status.state == "waiting for your answer"
        await pilot.press("y")
        await until(pilot, lambda: idle(app))

        assert [m.text for m in transcript(app, UserMessage)] == ["what does hello.py do?"]
        prose = transcript(app, AssistantMessage)
        assert [m.source for m in prose] == ["Let me **look** at it.\n", "It greets you."]
        assert agent.decisions == [("allow", "")]
        view = transcript(app, ToolCallView)[0]
        assert view.decision == "allow" and "hello.py" in str(view.query_one(".header").render())
        # the result is collapsed to 3 lines; the other 7 wait in a collapsed Collapsible
        result = view.query_one(ToolOutput)
        assert str(result.query_one(".preview").render()) == "line 0\nline 1\nline 2"
        from textual.widgets import Collapsible
        more = result.query_one(Collapsible)
        assert more.collapsed and more.title == "7 more lines"
        assert not app.query(PermissionPrompt)
        assert app.focused is app.prompt
        await pilot.click(more.query_one("CollapsibleTitle"))
        assert not more.collapsed
        await pilot.press("o", "k")  # typing after a click lands in the request box
        assert app.focused is app.prompt and app.prompt.value == "ok"
        assert app.status.tokens_per_second == 42.5 and app.status.context_used == 4


@pytest.mark.asyncio
async def test_always_allow_skips_the_next_prompt_for_that_tool(workspace):
    agent = ScriptedAgent(workspace, [[
        ("call", "Grep", {"pattern": "greet"}, "hello.py:1:def greet():"),
        ("call", "Grep", {"pattern": "print"}, "hello.py:4:print(greet())"),
        ("text", ["found both"]),
    ]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "find greet")
        await until(pilot, lambda: asking(app))
        await pilot.press("a")
        await until(pilot, lambda: idle(app))
        assert agent.decisions == [("always", "")]  # asked once only
        first, second = transcript(app, ToolCallView)
        assert (first.decision, second.decision) == ("always", "auto")
        assert second.query_one(ToolOutput).ok


@pytest.mark.asyncio
async def test_keys_typed_as_the_prompt_appears_do_not_answer_it(workspace):
    agent = ScriptedAgent(workspace, [[("call", "Bash", {"command": "rm -rf build"}, "unused"), ("text", ["ok"])]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "clean up")
        await until(pilot, lambda: isinstance(app.focused, PermissionPrompt))
        prompt = app.query_one(PermissionPrompt)
        prompt.shown_at = time.monotonic() + 60  # keys land within the grace period, however slow the machine
        await pilot.press("y", "a")
        assert not prompt.answered and agent.decisions == [] and not prompt.has_class("-note")
        await pilot.press("n")
        assert not prompt.has_class("-note")
        prompt.shown_at = time.monotonic() - GRACE_S  # once it has been up a moment, keys answer it
        await pilot.press("y")
        await until(pilot, lambda: idle(app))
        assert agent.decisions == [("allow", "")]


@pytest.mark.asyncio
async def test_reject_with_a_note_and_plain_reject(workspace):
    agent = ScriptedAgent(workspace, [[
        ("call", "Bash", {"command": "rm -rf build"}, "unused"),
        ("call", "Bash", {"command": "ls"}, "unused"),
        ("text", ["ok"]),
    ]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "clean up")
        await until(pilot, lambda: asking(app))
        view = transcript(app, ToolCallView)[0]
        assert "rm -rf build" in str(view.query_one(".command").render())  # Bash shows its command
        await pilot.press("n")
        prompt = app.query_one(PermissionPrompt)
        assert prompt.has_class("-note") and app.focused is prompt.query_one("#note")
        # y/a/n are letters of the note now, not answers
        await pilot.press(*"use make clean")
        await pilot.press("enter")
        await until(pilot, lambda: len(agent.decisions) == 1 and asking(app))
        await pilot.press("n", "enter")  # the quick path: n, Enter = plain reject
        await until(pilot, lambda: idle(app))
        assert agent.decisions == [("reject", "use make clean"), ("reject", "")]
        first, second = transcript(app, ToolCallView)
        assert str(first.query_one(".decision").render()) == "rejected: use make clean"
        assert first.query_one(".decision").has_class("-reject")
        assert str(second.query_one(".decision").render()) == "rejected"
        assert not first.query(ToolOutput) and not second.query(ToolOutput)  # the decision line says it all
        assert app.prompt.value == ""  # the note went to the model, not into the request box


@pytest.mark.asyncio
@pytest.mark.parametrize("sandbox, available, note", [
    (True, True, "runs in the sandbox: no network, writes only in the workspace"),
    (True, False, "runs without a sandbox (none available here)"),
    (False, True, "runs without a sandbox (--sandbox off)"),
])
async def test_the_bash_question_says_whether_it_runs_sandboxed(workspace, monkeypatch, sandbox, available, note):
    import tools.sandbox
    from agent.permissions import Permissions
    monkeypatch.setattr(tools.sandbox, "probe", lambda: tools.sandbox.Support(available, "forced for the test"))
    agent = ScriptedAgent(workspace, [[("call", "Read", {"path": "hello.py"}, "1\tdef greet():"),
                                       ("call", "Bash", {"command": "make"}, "built"), ("text", ["ok"])]])
    agent.permissions = Permissions(sandbox=sandbox)  # what the real Agent carries (agent/setup.py)
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "build it")
        await until(pilot, lambda: asking(app))
        assert str(app.query_one(PermissionPrompt).query_one(".question").render()) == "Allow Read?"
        await pilot.press("y")
        await until(pilot, lambda: asking(app) and app.focused.call.name == "Bash")
        assert str(app.focused.query_one(".question").render()) == f"Allow Bash? ({note})"
        await pilot.press("y")
        await until(pilot, lambda: idle(app))


@pytest.mark.asyncio
async def test_escape_stops_generation_within_a_second(workspace):
    agent = ScriptedAgent(workspace, [[("spin",)], [("text", ["after"])]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "sing")
        await until(pilot, lambda: transcript(app, AssistantMessage))
        assert app.busy
        start = time.monotonic()
        await pilot.press("escape")
        await until(pilot, lambda: idle(app), timeout=1.0)
        assert time.monotonic() - start < 1.0
        assert "la la" in transcript(app, AssistantMessage)[0].source
        assert transcript(app, Notice)[-1].kind == "info"  # "stopped."
        # the app is usable again, and Esc while idle does nothing
        await pilot.press("escape")
        await send(pilot, "again")
        await until(pilot, lambda: idle(app) and len(transcript(app, AssistantMessage)) == 2)


@pytest.mark.asyncio
async def test_ctrl_c_at_a_permission_prompt_rejects_and_stops(workspace):
    agent = ScriptedAgent(workspace, [[("call", "Bash", {"command": "sleep 100"}, "x"), ("text", ["never"])]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "wait")
        await until(pilot, lambda: asking(app))
        await pilot.press("ctrl+c")
        await until(pilot, lambda: idle(app), timeout=1.0)
        assert agent.decisions == [("reject", "")]
        assert not app.query(PermissionPrompt) and not transcript(app, AssistantMessage)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["ctrl+q", "leave"])
async def test_quitting_with_a_question_open_releases_the_worker(workspace, how):
    """asyncio waits for worker threads when the app's loop closes: a worker left blocked in ask()
    would hang the exit forever. Quitting answers the open question (reject) and stops the turn."""
    agent = ScriptedAgent(workspace, [[("call", "Bash", {"command": "ls"}, "x"), ("text", ["never"])]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "list")
        await until(pilot, lambda: asking(app))
        if how == "ctrl+q":
            await pilot.press("ctrl+q")
    try:
        deadline = time.monotonic() + 2
        while agent.turns_finished == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent.turns_finished == 1 and agent.decisions == [("reject", "")]
    finally:
        app._release_worker()  # so that a regression fails this test instead of hanging the suite


@pytest.mark.asyncio
async def test_edit_is_shown_as_a_diff_and_undo_reverts_it(workspace):
    from textual_diff_view import DiffView

    original = (workspace / "hello.py").read_text()
    agent = ScriptedAgent(workspace, [[
        ("call", "Edit", {"path": "hello.py", "old_string": "'hi'", "new_string": "'hello'"}, "edited hello.py"),
    ]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "say hello")
        await until(pilot, lambda: asking(app))
        diff = transcript(app, ToolCallView)[0].query_one(DiffView)
        # the file before/after (not just the snippets), so the diff has real line numbers and context
        assert diff.code_original.splitlines() == original.splitlines()
        assert diff.code_modified.splitlines() == original.replace("'hi'", "'hello'").splitlines()
        assert diff.counts == (1, 1)
        await pilot.press("y")
        await until(pilot, lambda: idle(app))
        assert "'hello'" in (workspace / "hello.py").read_text()

        await send(pilot, "/undo")
        await until(pilot, lambda: transcript(app, Notice))
        assert (workspace / "hello.py").read_text() == original
        assert "reverted" in str(transcript(app, Notice)[-1].render())
        await send(pilot, "/undo")  # nothing left: a clear error, not a crash
        await until(pilot, lambda: len(transcript(app, Notice)) == 2)
        last = transcript(app, Notice)[-1]
        assert last.kind == "error" and "nothing to undo" in str(last.render())


def test_edit_preview_texts(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\nx = 1\n")
    assert edit_texts({"path": "a.py", "old_string": "x = 1", "new_string": "x = 2"}, tmp_path) == \
        ("a.py", "x = 1\nx = 1\n", "x = 2\nx = 1\n")
    assert edit_texts({"path": "a.py", "old_string": "x = 1", "new_string": "y", "replace_all": "true"},
                      tmp_path)[2] == "y\ny\n"
    # new file, no match, outside the workspace, no workspace: fall back to old_string -> new_string
    assert edit_texts({"path": "new.py", "old_string": "", "new_string": "z"}, tmp_path) == ("new.py", "", "z")
    assert edit_texts({"path": "a.py", "old_string": "nope", "new_string": "z"}, tmp_path) == ("a.py", "nope", "z")
    (tmp_path.parent / "secret.txt").write_text("x = 1")
    assert edit_texts({"path": "../secret.txt", "old_string": "x = 1", "new_string": "q"}, tmp_path) == \
        ("../secret.txt", "x = 1", "q")
    assert edit_texts({"path": "a.py", "old_string": "x = 1", "new_string": "q"}, None) == ("a.py", "x = 1", "q")


def test_focus_diff_keeps_line_numbers_and_drops_far_lines():
    before = "\n".join(f"line {i}" for i in range(1, 5001))
    after = before.replace("line 2500\n", "changed\nadded\n")
    a, b = focus_diff(before, after)
    a, b = a.splitlines(), b.splitlines()
    assert a[2499] == "line 2500" and b[2499:2501] == ["changed", "added"]  # same line numbers as the file
    assert a[2496:2499] == b[2496:2499] == ["line 2497", "line 2498", "line 2499"]  # 3 lines of context
    assert a[2500:] == b[2501:] == ["line 2501", "line 2502", "line 2503"]
    assert not any(a[:2496]) and not any(b[:2496])  # far lines are blank: nothing to highlight
    assert focus_diff("", "new\nfile") == ("", "new\nfile") and focus_diff("x", "y") == ("x", "y")


@pytest.mark.asyncio
async def test_clear_help_unknown_command_and_exit(workspace):
    agent = ScriptedAgent(workspace, [[("text", ["hi there"])]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi")
        await until(pilot, lambda: idle(app) and transcript(app, AssistantMessage))
        assert agent.messages
        await send(pilot, "/clear")
        await until(pilot, lambda: agent.cleared == 1 and not transcript(app, UserMessage))
        assert not agent.messages and not transcript(app, AssistantMessage)
        await send(pilot, "/help")
        await until(pilot, lambda: any(n.kind == "help" for n in transcript(app, Notice)))
        await send(pilot, "/frobnicate")
        await until(pilot, lambda: "unknown command /frobnicate" in str(transcript(app, Notice)[-1].render()))
        await send(pilot, "/exit")
        await until(pilot, lambda: app._exit)


@pytest.mark.asyncio
async def test_input_history_up_down_keeps_the_draft(workspace, tmp_path):
    history = tmp_path / "state" / "history"
    agent = ScriptedAgent(workspace, [[("text", ["1"])], [("text", ["2"])]])
    app = NanocodeApp(agent, model_name="tiny", workspace=workspace, history_path=history)
    async with app.run_test(size=SIZE) as pilot:
        for text in ("first", "second"):
            await send(pilot, text)
            await until(pilot, lambda: idle(app) and not app.prompt.value)
        await pilot.press(*"dra", "up")
        assert app.prompt.value == "second"
        await pilot.press("up", "up")  # stops at the oldest
        assert app.prompt.value == "first"
        await pilot.press("down", "down")
        assert app.prompt.value == "dra"  # the draft comes back
    assert history.read_text() == "first\nsecond\n"
    app = NanocodeApp(ScriptedAgent(workspace, []), model_name="tiny", workspace=workspace, history_path=history)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("up")
        assert app.prompt.value == "second"  # history survives a restart


@pytest.mark.asyncio
async def test_ui_is_up_while_the_model_loads_and_a_queued_request_is_sent(workspace):
    release, warmed = threading.Event(), threading.Event()

    class WarmingAgent(ScriptedAgent):
        def warm_up(self):
            warmed.wait(5)

    agent = WarmingAgent(workspace, [[("text", ["loaded and answering"])]])

    def load():
        release.wait(5)
        return agent

    app = NanocodeApp(load, model_name="tiny-d4", workspace=workspace, notes=["pre-approved: Read"])
    async with app.run_test(size=SIZE) as pilot:
        assert app.status.state == "loading model…" and app.focused is app.prompt
        assert str(transcript(app, Notice)[0].render()) == "pre-approved: Read"
        assert "tiny-d4" in str(app.status.render())
        await send(pilot, "are you there?")
        assert "still loading" in str(transcript(app, Notice)[-1].render())
        await send(pilot, "typed while queued")  # refused, but kept in the box
        assert app.prompt.value == "typed while queued"
        release.set()
        # the queued request runs while warm-up is still going (the real source serialises the two)
        await until(pilot, lambda: not app.busy and transcript(app, AssistantMessage))
        assert app.status.state == "compiling…"
        warmed.set()
        await until(pilot, lambda: idle(app))
        assert agent.messages[0] == {"role": "user", "content": "are you there?"}
        assert transcript(app, AssistantMessage)[0].source == "loaded and answering"


@pytest.mark.asyncio
async def test_a_model_that_fails_to_load_is_reported_and_nothing_crashes(workspace):
    release = threading.Event()

    def load():
        release.wait(5)
        raise FileNotFoundError("no model in checkpoints/; train one or pass --model")

    app = NanocodeApp(load, model_name="missing", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "queued before the failure")
        release.set()
        await until(pilot, lambda: app.status.state == "model failed to load")
        failure = str(transcript(app, Notice)[-1].render())
        assert "no model in checkpoints/" in failure and "was not sent" in failure
        await send(pilot, "hello?")  # not refused as "still working": the queue was dropped
        await until(pilot, lambda: "no model is loaded" in str(transcript(app, Notice)[-1].render()))
        assert app.prompt.value == ""


@pytest.mark.asyncio
async def test_errors_and_a_crashing_loop_are_shown(workspace):
    class Crashing(ScriptedAgent):
        def run_turn(self, user_text, ask, cancel=None):
            yield Error("malformed tool call: unknown tool 'Fly'", "malformed")
            yield TextDelta("partial [b]markup[/b] ")
            raise ValueError("sampler exploded")

    app = NanocodeApp(Crashing(workspace, []), model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go")
        await until(pilot, lambda: idle(app))
        texts = [str(n.render()) for n in transcript(app, Notice)]
        assert "malformed tool call: unknown tool 'Fly'" in texts[0]
        assert "ValueError: sampler exploded" in texts[1]
        assert transcript(app, AssistantMessage)[0].source == "partial [b]markup[/b] "


@pytest.mark.asyncio
async def test_resumed_conversation_is_drawn(workspace):
    messages = [
        {"role": "user", "content": "where is greet?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "let me grep for it\n"},
            {"type": "tool_call", "name": "Grep", "args": {"pattern": "def greet"}},
            {"type": "tool_result", "ok": True, "output": "hello.py:1:def greet():"},
            {"type": "text", "text": "in hello.py, line 1"}]},
    ]
    app = NanocodeApp(ScriptedAgent(workspace, [], messages), model_name="tiny", workspace=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert [m.text for m in transcript(app, UserMessage)] == ["where is greet?"]
        assert [m.source for m in transcript(app, AssistantMessage)] == ["let me grep for it\n",
                                                                         "in hello.py, line 1"]
        view = transcript(app, ToolCallView)[0]
        assert view.query_one(ToolOutput).output == "hello.py:1:def greet():"


def test_tool_output_folds_only_when_more_than_one_line_would_hide():
    from textual.widgets import Collapsible, Static

    assert [type(w) for w in ToolOutput(True, "a\nb\nc\nd\n").compose()] == [Static]
    preview, fold = ToolOutput(False, "a\nb\nc\nd\ne").compose()
    assert isinstance(fold, Collapsible) and fold.title == "2 more lines"
    assert [type(w) for w in ToolOutput(True, "").compose()] == [Static]  # "(no output)"
