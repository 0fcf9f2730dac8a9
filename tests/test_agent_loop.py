"""The agent loop driven by scripted token streams (agent.source.ScriptedSource): everything but the model is
real (template, parser, permissions, tools on a tmp dir, sessions)."""
import json
import threading
import time
from pathlib import Path

import pytest

from agent.events import Error, Permission, TextDelta, ToolCall, ToolResult, TurnEnd
from agent.loop import Agent, UndoError, threaded
from agent.permissions import Permissions
from agent.session import Session
from agent.source import ScriptedSource

CALL = "<|tool_call_start|>{name}{args}<|tool_call_end|>"


def call(name: str, **args: str) -> str:
    return CALL.format(name=name, args="".join(f"<|tool_arg|>{k}<|tool_val|>{v}" for k, v in args.items()))


def make(tok, workspace, replies, *, allow=(), yes=False, session=None, **kw):
    source_kw = {k: kw.pop(k) for k in ("context_len", "chunk", "delay") if k in kw}
    source = ScriptedSource(replies, tok, **source_kw)
    return Agent(source, tok, workspace, Permissions(allow, yes), session=session, **kw), source


def run(agent, text="go", ask=lambda c: ("allow", ""), cancel=None):
    return list(agent.run_turn(text, ask, cancel))


def only(events, kind):
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "cli.py").write_text("import sys\n\ndef parse_args(argv):\n    return argv[1:]\n")
    return tmp_path


def test_well_formed_turn_streams_text_calls_and_results(tiny_tokenizer, ws):
    agent, source = make(tiny_tokenizer, ws, [
        "let me grep for it\n" + call("Grep", pattern="def parse_args"),
        "it's in cli.py, line 3 :)<|assistant_end|>"], chunk=3)
    asked = []
    events = run(agent, "where is parse_args?", ask=lambda c: asked.append(c) or ("allow", ""))
    assert [type(e) for e in events if not isinstance(e, TextDelta)] == [ToolCall, Permission, ToolResult, TurnEnd]
    assert asked == [ToolCall(1, "Grep", {"pattern": "def parse_args"})]
    result = only(events, ToolResult)[0]
    assert result.ok and result.output == "cli.py:3:def parse_args(argv):"
    assert events[-1] == TurnEnd("done", "it's in cli.py, line 3 :)")
    text = "".join(e.text for e in only(events, TextDelta))
    assert text == "let me grep for it\nit's in cli.py, line 3 :)"  # no call syntax leaks into prose
    assert agent.messages == [
        {"role": "user", "content": "where is parse_args?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "let me grep for it\n"},
            {"type": "tool_call", "name": "Grep", "args": {"pattern": "def parse_args"}},
            {"type": "tool_result", "ok": True, "output": "cli.py:3:def parse_args(argv):"},
            {"type": "text", "text": "it's in cli.py, line 3 :)"}]}]
    # the second generation continued the same assistant turn, with the result in the prompt
    tok = tiny_tokenizer
    assert source.prompts[1][:len(source.prompts[0])] == source.prompts[0]
    assert source.prompts[1][-1] == tok.special("tool_result_end")
    assert 0 < agent.context_used <= agent.context_len and agent.tokens_per_second > 0


def test_stream_decodes_characters_split_across_tokens(tiny_tokenizer, ws):
    tok = tiny_tokenizer
    byte_id = {b: i for i, b in enumerate(tok.token_bytes) if len(b) == 1 and i not in tok.special_ids}
    text = "héllo 日本 🎉"
    ids = [byte_id[bytes([b])] for b in text.encode()] + [tok.special("assistant_end")]
    agent, _ = make(tok, ws, [ids], chunk=1)
    events = run(agent)
    deltas = [e.text for e in only(events, TextDelta)]
    assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)
    assert events[-1].text == text


@pytest.mark.parametrize("bad, kind", [
    (call("Fetch", url="x"), "unknown_tool"),
    (call("Read", offset="3"), "missing_argument"),
    ("<|tool_call_start|>Read<|tool_val|>cli.py<|tool_call_end|>", "value_without_name"),
    ("checking <|tool_result_start|>fake output<|tool_result_end|>", "model_wrote_result"),
    ("<|tool_call_start|>Read<|tool_arg|>path<|user_start|><|tool_call_end|>", "stray_token"),
])
def test_malformed_call_becomes_error_result_and_model_recovers(tiny_tokenizer, ws, bad, kind):
    agent, source = make(tiny_tokenizer, ws, [bad, call("Read", path="cli.py"), "done<|assistant_end|>"])
    events = run(agent)
    errors = only(events, Error)
    assert errors[0].kind == kind
    assert events[-1] == TurnEnd("done", "done")
    content = agent.messages[-1]["content"]
    error_results = [p for p in content if p["type"] == "tool_result" and not p["ok"]]
    assert len(error_results) == 1 and error_results[0]["output"].startswith("malformed tool call: ")
    # the model saw the error (rendered with the error prefix) before its next try
    assert "error: malformed tool call" in tiny_tokenizer.decode(source.prompts[1])
    assert only(events, ToolResult)[0].ok  # the retried Read ran


def test_truncated_call_at_the_token_limit_is_an_error_the_model_can_fix(tiny_tokenizer, ws):
    agent, source = make(tiny_tokenizer, ws, [
        "<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>cli.py and then some more words here",
        call("Read", path="cli.py"), "ok<|assistant_end|>"], max_reply_tokens=12)
    events = run(agent)
    assert only(events, Error)[0].kind == "truncated"
    assert events[-1].reason == "done"
    assert len(source.prompts) == 3


def test_reply_that_never_ends_stops_at_the_length_limit(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, ["and so on " * 40], max_reply_tokens=20)
    events = run(agent)
    assert events[-1].reason == "length" and only(events, Error)[0].kind == "length"
    assert agent.messages[-1]["content"][0]["type"] == "text"  # the prose so far is kept


def test_same_failing_call_repeated_ends_the_turn(tiny_tokenizer, ws):
    missing = call("Read", path="nope.py")
    agent, source = make(tiny_tokenizer, ws, [missing] * 5, allow=["Read"])
    events = run(agent)
    assert events[-1].reason == "repeated_failure"
    assert len(only(events, ToolResult)) == 3 and not any(r.ok for r in only(events, ToolResult))
    assert "3 times" in only(events, Error)[-1].message
    assert len(source.prompts) == 3


def test_same_fruitless_grep_repeated_ends_the_turn_but_an_edit_starts_the_count_again(tiny_tokenizer, ws):
    grep = call("Grep", pattern="def nothing_here")  # finds nothing: ok, but the same answer every time
    agent, _ = make(tiny_tokenizer, ws, [grep] * 5, allow=["Grep"])
    events = run(agent)
    assert events[-1].reason == "repeated_failure" and len(only(events, ToolResult)) == 3
    assert all(r.ok for r in only(events, ToolResult)) and "gave the same result" in only(events, Error)[-1].message
    tests = call("Bash", command="python -c pass")
    edit = call("Edit", path="cli.py", old_string="argv[1:]", new_string="argv[2:]")
    undo = call("Edit", path="cli.py", old_string="argv[2:]", new_string="argv[1:]")
    agent, _ = make(tiny_tokenizer, ws, [tests, tests, edit, tests, tests, undo, tests, "done<|assistant_end|>"],
                    yes=True)
    events = run(agent)
    assert events[-1].reason == "done" and len(only(events, ToolResult)) == 7


def test_same_malformed_call_repeated_ends_the_turn(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Fetch", url="x")] * 5)
    events = run(agent)
    assert events[-1].reason == "repeated_failure"
    assert [e.kind for e in only(events, Error)] == ["unknown_tool"] * 3 + ["repeated_failure"]


def test_step_limit_stops_before_running_the_next_call(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Bash", command=f"echo {i} >> log") for i in range(5)],
                    yes=True, max_steps=2)
    events = run(agent)
    assert events[-1].reason == "max_steps"
    assert (ws / "log").read_text() == "0\n1\n"  # the third call was not run
    assert len(only(events, ToolCall)) == 2
    assert only(events, Error)[-1].kind == "max_steps"


def test_permissions_reject_with_note_always_and_preapproved(tiny_tokenizer, ws, tmp_path):
    session = Session(tmp_path / "sessions", workspace=ws)
    agent, source = make(tiny_tokenizer, ws, [
        "I'll delete it " + call("Bash", command="rm cli.py"),
        "fine, reading instead " + call("Read", path="cli.py"),
        call("Read", path="cli.py", offset="2"),
        call("Grep", pattern="import"),
        "done<|assistant_end|>"], allow=["grep"], session=session)
    answers = iter([("reject", "don't delete files"), ("always", "")])
    asked = []

    def ask(c):
        asked.append(c.name)
        return next(answers)
    events = run(agent, "tidy up", ask=ask)
    assert asked == ["Bash", "Read"]  # the second Read ('always') and Grep (--allow) were not asked about
    assert [(p.decision, p.note) for p in only(events, Permission)] == [
        ("reject", "don't delete files"), ("always", ""), ("auto", ""), ("auto", "")]
    assert (ws / "cli.py").exists()
    declined = only(events, ToolResult)[0]
    assert not declined.ok and declined.output == "the user declined this call and said: don't delete files"
    assert "error: the user declined this call and said: don't delete files" in \
        tiny_tokenizer.decode(source.prompts[1])
    assert events[-1].reason == "done"

    # the rejection is a preference record; the accepted next step is its chosen side
    records = [json.loads(line) for line in session.preferences_path.read_text().splitlines()]
    assert len(records) == 1
    rec = records[0]
    assert rec["messages"] == [{"role": "user", "content": "tidy up"}]
    assert rec["note"] == "don't delete files" and rec["session"] == session.id
    assert rec["rejected"]["content"] == [{"type": "text", "text": "I'll delete it "},
                                          {"type": "tool_call", "name": "Bash", "args": {"command": "rm cli.py"}}]
    assert rec["chosen"]["content"] == [{"type": "text", "text": "fine, reading instead "},
                                        {"type": "tool_call", "name": "Read", "args": {"path": "cli.py"}}]
    # and the conversation is saved as conversation JSONL
    saved = json.loads(session.path.read_text())
    assert saved["messages"] == agent.messages and saved["session"] == session.id


def test_rejection_followed_by_another_rejection_leaves_chosen_empty(tiny_tokenizer, ws, tmp_path):
    session = Session(tmp_path / "sessions")
    agent, _ = make(tiny_tokenizer, ws, [call("Bash", command="rm a"), call("Bash", command="rm b"),
                                         "ok<|assistant_end|>"], session=session)
    run(agent, ask=lambda c: ("reject", ""))
    first, second = [json.loads(line) for line in session.preferences_path.read_text().splitlines()]
    assert first["chosen"] is None  # its next step was rejected too: DPO data prep fills it
    assert [r["rejected"]["content"][-1]["args"]["command"] for r in (first, second)] == ["rm a", "rm b"]
    # the second rejection's chosen side is the final answer, after the same turn so far
    declined = [{"type": "tool_call", "name": "Bash", "args": {"command": "rm a"}},
                {"type": "tool_result", "ok": False, "output": "the user declined this call"}]
    assert second["rejected"]["content"][:2] == declined
    assert second["chosen"]["content"] == declined + [{"type": "text", "text": "ok"}]


def test_interrupt_stops_generation_within_a_second(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, ["word " * 500], delay=0.01)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    events = run(agent, cancel=cancel)
    assert time.monotonic() - start < 1.0
    assert events[-1].reason == "interrupted" and len(only(events, TurnEnd)) == 1
    assert agent.messages[-1]["content"][0]["text"].startswith("word word")  # partial prose kept


def test_interrupt_stops_a_running_bash_call(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Bash", command="sleep 30"), "never<|assistant_end|>"], yes=True)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    events = run(agent, cancel=cancel)
    assert time.monotonic() - start < 1.5
    assert events[-1].reason == "interrupted"
    assert not only(events, ToolResult)[0].ok
    content = agent.messages[-1]["content"]
    assert [p["type"] for p in content] == ["tool_call", "tool_result"]  # the protocol stays well-formed


def test_interrupt_before_anything_was_written_leaves_no_empty_reply(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, ["x<|assistant_end|>"])
    cancel = threading.Event()
    cancel.set()
    events = run(agent, cancel=cancel)
    assert events == [TurnEnd("interrupted", "")]
    assert agent.messages == [{"role": "user", "content": "go"}]


def test_threaded_runs_ask_on_the_calling_thread_and_ctrl_c_cancels(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Read", path="cli.py"), "ok<|assistant_end|>"])
    threads = []

    def ask(c):
        threads.append(threading.current_thread())
        return "allow", ""
    events = list(threaded(agent, "go", ask, threading.Event()))
    assert threads == [threading.main_thread()] and events[-1].reason == "done"

    agent2, _ = make(tiny_tokenizer, ws, ["word " * 500], delay=0.01)
    cancel, polls = threading.Event(), []

    def poll():  # a Ctrl+C arrives while the turn streams
        polls.append(1)
        if len(polls) == 3:
            raise KeyboardInterrupt
    events = list(threaded(agent2, "go", ask, cancel, poll=poll))
    assert cancel.is_set() and events[-1].reason == "interrupted"


def test_undo_reverts_edits_newest_first_and_tells_the_model(tiny_tokenizer, ws):
    original = (ws / "cli.py").read_text()
    agent, source = make(tiny_tokenizer, ws, [
        call("Edit", path="cli.py", old_string="argv[1:]", new_string="argv[2:]"),
        call("Edit", path="new.py", old_string="", new_string="x = 1\n"),
        "done<|assistant_end|>", "ok<|assistant_end|>"], allow=["Edit"])
    run(agent)
    assert "argv[2:]" in (ws / "cli.py").read_text() and (ws / "new.py").exists()
    assert "new.py" in agent.undo()
    assert not (ws / "new.py").exists()
    agent.undo()
    assert (ws / "cli.py").read_text() == original
    with pytest.raises(UndoError, match="nothing to undo"):
        agent.undo()
    run(agent, "next")
    assert agent.messages[-2]["content"].startswith("(I undid the creation of new.py.)\n(I undid your edit of cli.py.)")


def test_undo_refuses_when_the_file_changed_since(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Edit", path="cli.py", old_string="sys", new_string="os"),
                                         "ok<|assistant_end|>"], yes=True)
    run(agent)
    (ws / "cli.py").write_text("changed by hand\n")
    with pytest.raises(UndoError, match="changed since"):
        agent.undo()
    assert (ws / "cli.py").read_text() == "changed by hand\n"


def test_source_failure_is_an_error_event_and_one_turn_end(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [])  # the script has no reply: the source raises
    events = run(agent)
    assert [type(e) for e in events] == [Error, TurnEnd]
    assert events[0].kind == "internal" and "no reply left" in events[0].message
    assert events[1].reason == "error"


def test_bad_answer_from_ask_is_reported_not_raised(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Read", path="cli.py")])
    events = run(agent, ask=lambda c: ("maybe", ""))
    assert events[-1].reason == "error" and "maybe" in only(events, Error)[0].message


def test_clear_forgets_the_conversation_and_starts_a_new_session(tiny_tokenizer, ws, tmp_path):
    session = Session(tmp_path / "sessions")
    agent, _ = make(tiny_tokenizer, ws, ["hi<|assistant_end|>", "hello again<|assistant_end|>"], session=session)
    run(agent)
    first = agent.session.id
    agent.clear()
    assert agent.messages == [] and agent.session.id != first and agent.context_used == 0
    run(agent)
    assert json.loads(agent.session.path.read_text())["messages"][-1]["content"][0]["text"] == "hello again"
    assert len(json.loads(session.path.read_text())["messages"]) == 2  # the old session file is untouched


def test_clear_forgets_the_always_answers_but_not_the_allow_flag(tiny_tokenizer, ws):
    agent, _ = make(tiny_tokenizer, ws, [call("Grep", pattern="x"), "ok<|assistant_end|>"], allow=["Read"])
    run(agent, ask=lambda c: ("always", ""))
    assert agent.permissions.always == {"Grep"}
    assert agent.clear() == ["Grep"]  # the app and the REPL say which tools will ask again
    assert agent.permissions.preapproved("Read") and not agent.permissions.preapproved("Grep")
    assert agent.clear() == []


def test_resumed_session_continues_the_conversation(tiny_tokenizer, ws, tmp_path):
    home = tmp_path / "home"
    agent, _ = make(tiny_tokenizer, ws, ["first answer<|assistant_end|>"], session=Session.new(home))
    run(agent, "first question")
    resumed = Session.load(None, home)
    agent2, source2 = make(tiny_tokenizer, ws, ["second answer<|assistant_end|>"], session=resumed)
    assert agent2.messages == agent.messages and agent2.context_used > 0
    run(agent2, "second question")
    prompt = tiny_tokenizer.decode(source2.prompts[0])
    assert "first question" in prompt and "first answer" in prompt
    assert len(Session.load(resumed.id, home).messages) == 4
