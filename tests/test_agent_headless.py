"""`nanocode run` without a UI (agent/headless.py): the final answer, --json event lines, rejections of
calls that need approval, exit status."""
import io
import json

import tools.sandbox

from agent.headless import EXIT_FAILED, EXIT_OK, run_headless
from agent.loop import Agent
from agent.permissions import Permissions
from agent.source import ScriptedSource

GREP = "let me grep\n<|tool_call_start|>Grep<|tool_arg|>pattern<|tool_val|>def main<|tool_call_end|>"
BASH = "<|tool_call_start|>Bash<|tool_arg|>command<|tool_val|>touch made<|tool_call_end|>"


def headless(tok, ws, replies, json_lines, **perms):
    agent = Agent(ScriptedSource(replies, tok, chunk=4), tok, ws, Permissions(**perms), max_steps=3,
                  record_preferences=False)
    out, err = io.StringIO(), io.StringIO()
    code = run_headless(agent, "where is main?", json_lines=json_lines, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_json_lines_are_one_well_formed_event_per_line(tiny_tokenizer, tmp_path):
    (tmp_path / "app.py").write_text("def main():\n    pass\n")
    code, out, err = headless(tiny_tokenizer, tmp_path, [GREP, "in app.py<|assistant_end|>"], True,
                              allowed=["Grep"])
    assert code == EXIT_OK and err == ""
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["type"] for e in events]
    assert set(kinds) <= {"text", "tool_call", "permission", "tool_result", "turn_end", "error"}
    assert kinds.count("turn_end") == 1 and kinds[-1] == "turn_end"
    assert "".join(e["text"] for e in events if e["type"] == "text") == "let me grep\nin app.py"
    call = next(e for e in events if e["type"] == "tool_call")
    assert call["name"] == "Grep" and call["args"] == {"pattern": "def main"}
    assert next(e for e in events if e["type"] == "permission")["decision"] == "auto"
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["ok"] is True and result["output"] == "app.py:1:def main():"
    assert events[-1] == {"type": "turn_end", "reason": "done", "text": "in app.py"}


def test_plain_output_is_the_final_answer(tiny_tokenizer, tmp_path):
    (tmp_path / "app.py").write_text("def main():\n    pass\n")
    code, out, err = headless(tiny_tokenizer, tmp_path, [GREP, "it is in app.py<|assistant_end|>"], False,
                              yes=True)
    unconfined = "" if tools.sandbox.probe().available else f"nanocode: {tools.sandbox.status()}\n"
    assert (code, out, err) == (EXIT_OK, "it is in app.py\n", unconfined)


def test_bash_running_unasked_and_unsandboxed_is_said_once(tiny_tokenizer, tmp_path):
    replies = [BASH, BASH, "made it.<|assistant_end|>"]
    code, out, err = headless(tiny_tokenizer, tmp_path, replies, False, allowed=["Bash"], sandbox=False)
    assert code == EXIT_OK and (tmp_path / "made").exists()
    assert err == "nanocode: sandbox off (--sandbox off): Bash runs with your full access, network included\n"
    code, out, err = headless(tiny_tokenizer, tmp_path, replies, False, allowed=["Read"], sandbox=False)
    assert err.count("rejected the Bash call") == 2 and "sandbox off" not in err  # Bash cannot run at all


def test_calls_needing_approval_are_rejected_and_reported(tiny_tokenizer, tmp_path):
    code, out, err = headless(tiny_tokenizer, tmp_path, [BASH, "I could not run it.<|assistant_end|>"], True,
                              allowed=["Read"])
    assert code == EXIT_OK
    assert not (tmp_path / "made").exists()
    assert "rejected the Bash call (it needs approval); pass --allow Bash or --yes" in err
    events = [json.loads(line) for line in out.splitlines()]
    perm = next(e for e in events if e["type"] == "permission")
    assert perm["decision"] == "reject" and "--allow Bash" in perm["note"]
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["ok"] is False and result["output"].startswith("the user declined this call")


def test_a_turn_that_ends_early_exits_non_zero(tiny_tokenizer, tmp_path):
    calls = [BASH.replace("touch made", f"touch made{i}") for i in range(5)]  # distinct: not the repeat guard
    code, out, err = headless(tiny_tokenizer, tmp_path, calls, False, yes=True)
    assert code == EXIT_FAILED and out == ""
    assert "limit of 3 tool calls" in err and "ended early (max_steps)" in err
