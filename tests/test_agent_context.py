"""Trimming tool results and fitting conversations into a small context (agent/context.py), and the loop
running a conversation far longer than its context without crashing."""
import pytest

from agent.context import ELIDED_OUTPUT, ContextFull, fit_prompt, trim_result, trim_text
from agent.events import Error, ToolResult, TurnEnd
from agent.loop import Agent
from agent.permissions import Permissions
from agent.source import ScriptedSource
from nanocode.template import render_prompt
from tools import execute


def numbered(n: int) -> str:
    return "".join(f"line {i}: some text here\n" for i in range(1, n + 1))


def test_short_text_is_untouched(tiny_tokenizer):
    assert trim_text("hello\n", tiny_tokenizer, 50) == "hello\n"


def test_trim_keeps_head_and_tail_whole_lines_within_budget(tiny_tokenizer):
    tok = tiny_tokenizer
    text = numbered(300)
    out = trim_text(text, tok, 200)
    assert len(tok.encode(out)) <= 200
    head = out.partition("[...")[0]
    assert text.startswith(head) and head.endswith("\n") and head.startswith("line 1:")
    tail = out.split("...]\n", 1)[1]
    assert text.endswith(tail) and tail.startswith("line ")  # cut on a line boundary
    assert "elided to fit the model's context" in out and "line 150:" not in out


def test_read_result_says_how_to_read_the_elided_lines(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    (tmp_path / "big.py").write_text(numbered(400))
    full = execute("Read", {"path": "big.py"}, tmp_path).output
    out = trim_result(full, "Read", {"path": "big.py"}, tok, 300)
    assert len(tok.encode(out)) <= 300
    kept_head = [line for line in out.split("[...")[0].splitlines()]
    first_elided = int(kept_head[-1].split("\t")[0]) + 1
    note = out.split("[...", 1)[1].split("...]", 1)[0]
    assert f"Read big.py with offset={first_elided} limit=" in note
    limit = int(note.split("limit=")[1].split()[0])
    # reading that range gives exactly the elided lines
    elided = execute("Read", {"path": "big.py", "offset": str(first_elided), "limit": str(limit)}, tmp_path).output
    assert elided.splitlines()[0] == full.splitlines()[first_elided - 1]
    assert out.split("...]\n", 1)[1].splitlines()[0] == full.splitlines()[first_elided - 1 + limit]


def test_bash_and_single_long_line_results_are_trimmed_too(tiny_tokenizer):
    tok = tiny_tokenizer
    out = trim_result("é" * 3000, "Bash", {"command": "x"}, tok, 200)
    assert len(tok.encode(out)) <= 200 and "\ufffd" not in out and "run the command again" in out
    assert out.startswith("éé") and out.endswith("éé")
    tiny = trim_result("é" * 3000, "Bash", {"command": "x"}, tok, 70)  # no room for the hint
    assert len(tok.encode(tiny)) <= 70 and "elided" in tiny


def conversation(turns: int, output: str) -> list[dict]:
    msgs = []
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question {i}"})
        msgs.append({"role": "assistant", "content": [
            {"type": "tool_call", "name": "Read", "args": {"path": f"f{i}.py"}},
            {"type": "tool_result", "ok": i % 2 == 0, "output": output},
            {"type": "text", "text": f"answer {i}"}]})
    return msgs


def test_fit_elides_old_tool_output_before_old_turns(tiny_tokenizer):
    tok = tiny_tokenizer
    msgs = conversation(4, numbered(20)) + [{"role": "user", "content": "now this"}]
    full = len(render_prompt(msgs, tok))
    fit = fit_prompt(msgs, tok, full - 50)
    assert fit.elided_outputs >= 1 and fit.dropped_messages == 0 and len(fit.ids) <= full - 50
    text = tok.decode(fit.ids)
    assert ELIDED_OUTPUT in text and "question 0" in text
    assert msgs[1]["content"][1]["output"] == numbered(20)  # the conversation itself is untouched


def test_fit_drops_old_turns_when_eliding_output_is_not_enough(tiny_tokenizer):
    tok = tiny_tokenizer
    msgs = conversation(6, numbered(10)) + [{"role": "user", "content": "the current question"}]
    fit = fit_prompt(msgs, tok, 120)
    text = tok.decode(fit.ids)
    assert len(fit.ids) <= 120 and fit.dropped_messages > 0 and fit.dropped_messages % 2 == 0
    assert "the current question" in text and "question 0" not in text
    assert text.startswith("<|bos|><|user_start|>")  # the prompt still opens with a user turn


def test_fit_elides_exactly_as_much_as_needed(tiny_tokenizer):
    """fit_prompt counts lengths incrementally; brute force (elide k outputs, render from scratch) must agree
    on the fewest elisions that fit, for every limit."""
    tok = tiny_tokenizer
    msgs = conversation(5, numbered(15)) + [{"role": "user", "content": "q " * 50}]

    def elided(k):
        out, left = [], k
        for m in msgs:
            if isinstance(m["content"], list):
                parts = []
                for p in m["content"]:
                    if p["type"] == "tool_result" and left:
                        p, left = dict(p, output=ELIDED_OUTPUT), left - 1
                    parts.append(p)
                m = dict(m, content=parts)
            out.append(m)
        return out
    lengths = [len(render_prompt(elided(k), tok)) for k in range(6)]
    for limit in range(lengths[-1], lengths[0] + 1, 7):
        fit = fit_prompt(msgs, tok, limit)
        assert len(fit.ids) <= limit and fit.dropped_messages == 0
        assert fit.elided_outputs == min(k for k in range(6) if lengths[k] <= limit)
        assert fit.ids == render_prompt(elided(fit.elided_outputs), tok)


def test_fit_trims_an_over_long_user_message(tiny_tokenizer):
    tok = tiny_tokenizer
    msgs = [{"role": "user", "content": numbered(200)}]
    fit = fit_prompt(msgs, tok, 150)
    assert fit.trimmed_user and len(fit.ids) <= 150 and "line 1:" in tok.decode(fit.ids)


def test_fit_raises_context_full_when_the_current_step_cannot_fit(tiny_tokenizer):
    tok = tiny_tokenizer
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "word " * 300}]}]
    with pytest.raises(ContextFull, match="start a new conversation"):
        fit_prompt(msgs, tok, 50)


def test_loop_runs_far_past_its_context_without_crashing(tiny_tokenizer, tmp_path):
    """A 256-token context, big files read over many turns: results are trimmed, old output and turns are
    elided, every prompt fits, and the user still gets the full output in the events."""
    tok = tiny_tokenizer
    for i in range(6):
        (tmp_path / f"f{i}.py").write_text(numbered(80))
    read = "<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>f{}.py<|tool_call_end|>"
    replies = []
    for i in range(6):
        replies += ["let me look " + read.format(i), f"file {i} has 80 lines<|assistant_end|>"]
    source = ScriptedSource(replies, tok, context_len=256)
    agent = Agent(source, tok, tmp_path, Permissions(["Read"]), max_reply_tokens=48)
    notices = []
    for i in range(6):
        events = list(agent.run_turn(f"how long is f{i}.py?", lambda c: ("allow", "")))
        assert events[-1] == TurnEnd("done", f"file {i} has 80 lines")
        full = [e for e in events if isinstance(e, ToolResult)][0]
        assert full.output.count("\n") >= 79  # the user sees everything
        notices += [e for e in events if isinstance(e, Error) and e.kind == "context_trimmed"]
    assert all(len(p) <= 256 - agent.reply_reserve for p in source.prompts)
    assert notices  # the user was told that old context was elided
    seen = [p for p in agent.messages[-1]["content"] if p["type"] == "tool_result"][0]["output"]
    assert "elided to fit" in seen and len(tok.encode(seen)) <= agent.result_budget
    assert len(agent.messages) == 12  # the session keeps every turn
