"""SOUL.md and the critic: the rule ids agree, and every rule passes good turns and catches bad ones."""
import copy

import pytest

from training.critic import RULES, Violation, critique, is_question_only, pass_rates
from training.soul import soul_rule_ids, soul_rule_texts, soul_text

GREP = {"type": "tool_call", "name": "Grep", "args": {"pattern": "def parse_args"}}
GREP_OUT = {"type": "tool_result", "ok": True, "output": "src/cli.py:12:def parse_args(argv):"}
GOOD = {"messages": [
    {"role": "user", "content": "where is parse_args defined?"},
    {"role": "assistant", "content": [
        {"type": "text", "text": "let me grep for it\n"}, GREP, GREP_OUT,
        {"type": "text", "text": "it's in `src/cli.py`, line 12 :) it takes `argv` and returns the options."}]},
]}


def assistant(*parts):
    return {"role": "assistant", "content": list(parts)}


def text(s):
    return {"type": "text", "text": s}


def rules_broken(item, **context):
    return {v.rule for v in critique(item, context=context)}


def test_soul_md_and_critic_name_the_same_rules():
    assert "do exactly what was asked" in soul_text()
    assert soul_rule_ids() == list(RULES)
    texts = soul_rule_texts()
    assert all(len(texts[r].split()) >= 8 for r in RULES)  # each rule is explained, not just named


def test_good_conversation_keeps_every_rule():
    assert critique(GOOD) == []
    assert pass_rates([GOOD]) == {r: 1.0 for r in RULES}


def test_violation_carries_rule_and_message():
    bad = copy.deepcopy(GOOD)
    bad["messages"][1]["content"][-1]["text"] = "Great question! It's in src/cli.py, line 12."
    vs = critique(bad)
    assert all(isinstance(v, Violation) and v.message for v in vs)
    assert {v.rule for v in vs} == {"lowercase", "no_sycophancy"}
    assert pass_rates([bad])["lowercase"] == 0.0


def test_lowercase():
    req = "what does Config do?"
    ok = assistant(text("Config holds the settings; Config.load reads them. i checked with Grep on GitHub."))
    assert rules_broken(ok, request=req) == set()
    assert "lowercase" in rules_broken(ok, request="what does it do?")  # Config never appeared
    for s in ["I found it.", "Sure, here it is.", "The function returns None.", "ok, Let me look."]:
        assert rules_broken(assistant(text(s)), request=req) >= {"lowercase"}, s
    # an identifier seen in a tool result may be capitalised, an ordinary English word may not
    turn = assistant({"type": "tool_call", "name": "Read", "args": {"path": "a.py"}},
                     {"type": "tool_result", "ok": True, "output": "     1\tclass Parser:  # The parser"})
    turn["content"].insert(0, text("reading it\n"))
    turn["content"].append(text("Parser is a class. The end."))
    broken = critique(turn, context={"request": "what is in a.py?"})
    assert [v.rule for v in broken] == ["lowercase"] and "The" in broken[0].message and "Parser" not in broken[0].message


def test_no_shouting():
    assert rules_broken(assistant(text("it writes JSON to the API, see `MAX_SIZE`.")), request="x") == set()
    assert rules_broken(assistant(text("this is REALLY bad")), request="x") == {"no_shouting"}
    assert rules_broken(assistant(text("done!!")), request="x") == {"no_shouting"}
    assert rules_broken(assistant(text("done! it works.")), request="x") == set()


@pytest.mark.parametrize("s", ["great question! it's in a.py.", "you're absolutely right, sorry.",
                               "absolutely! here it is.", "i'd be happy to help with that.",
                               "what a clever idea. done."])
def test_no_sycophancy_catches(s):
    assert "no_sycophancy" in rules_broken(assistant(text(s)), request="a.py?")


def test_no_sycophancy_passes_plain_warmth():
    assert rules_broken(assistant(text("nice, that worked :) the tests pass now.")), request="x") == set()


def test_concise():
    assert "concise" in rules_broken(assistant(text("word " * 121)), request="x")
    assert "concise" not in rules_broken(assistant(text("word " * 100 + "\n```\n" + "code " * 300 + "\n```")),
                                         request="x")
    long_note = assistant(text("so " * 31), GREP, GREP_OUT, text("found it in src/cli.py."))
    assert rules_broken(long_note, request="where?") == {"concise"}
    assert rules_broken(assistant(text("done. i hope this helps.")), request="x") == {"concise"}
    assert rules_broken(assistant(text("the file is here. the file is here.")), request="x") == {"concise"}


def test_friendly():
    assert rules_broken(assistant(text("obviously it's in the loop.")), request="x") == {"friendly"}
    ends_bare = assistant(text("let me grep\n"), GREP, GREP_OUT)
    assert rules_broken(ends_bare, request="where?") == {"friendly"}
    assert rules_broken(ends_bare, request="where?", finished=False) == set()  # a turn still in progress


def test_explains_tool_use():
    silent = assistant(GREP, GREP_OUT, text("it's in src/cli.py."))
    assert rules_broken(silent, request="where?") == {"explains_tool_use"}
    code_only = assistant(text("```\ngrep\n```"), GREP, GREP_OUT, text("it's in src/cli.py."))
    assert rules_broken(code_only, request="where?") == {"explains_tool_use"}


@pytest.mark.parametrize("call,why", [
    ({"name": "Search", "args": {"pattern": "x"}}, "unknown tool"),
    ({"name": "Read", "args": {}}, "missing path"),
    ({"name": "Read", "args": {"path": "a.py", "lines": "3"}}, "no argument"),
    ({"name": "Read", "args": {"path": "a.py", "limit": "ten"}}, "whole number"),
    ({"name": "Edit", "args": {"path": "a.py", "old_string": "x", "new_string": "x"}}, "changes nothing"),
])
def test_well_formed_calls_bad_calls(call, why):
    turn = assistant(text("checking\n"), {"type": "tool_call", **call},
                     {"type": "tool_result", "ok": False, "output": "no"}, text("that didn't work, sorry."))
    vs = [v for v in critique(turn, context={"request": "where?"}) if v.rule == "well_formed_calls"]
    assert vs and why in vs[0].message


def test_well_formed_calls_structure_and_pseudo_syntax():
    no_result = assistant(text("let me grep\n"), GREP, text("it's in src/cli.py."))
    assert "well_formed_calls" in rules_broken(no_result, request="where?")
    assert rules_broken(assistant(text("let me grep\n"), GREP), request="where?", finished=False) == set()
    for prose in ["let me look: Grep(pattern='def f')", "calling <|tool_call_start|>Read"]:
        assert "well_formed_calls" in rules_broken(assistant(text(prose)), request="x")


def test_no_extra_work():
    edit = {"type": "tool_call", "name": "Edit", "args": {"path": "src/cli.py", "old_string": "a", "new_string": "b"}}
    done = {"type": "tool_result", "ok": True, "output": "edited src/cli.py"}
    turn = assistant(text("changing it\n"), edit, done, text("done, `a` is `b` in src/cli.py now."))
    assert rules_broken(turn, request="rename a to b in src/cli.py") == set()
    assert rules_broken(turn, request="where is a used?") == {"no_extra_work"}
    assert rules_broken(turn, request="rename a to b", allowed_paths=["other.py"]) == {"no_extra_work"}
    extra = assistant(text("renamed it. while i was at it i also added type hints."))
    assert rules_broken(extra, request="rename a to b") == {"no_extra_work"}
    bash = lambda cmd: assistant(text("running it\n"), {"type": "tool_call", "name": "Bash", "args": {"command": cmd}},
                                 {"type": "tool_result", "ok": True, "output": "exit code 0"}, text("it ran fine."))
    assert rules_broken(bash("git push origin main"), request="run the tests") == {"no_extra_work"}
    assert rules_broken(bash("git push origin main"), request="push my branch please") == set()
    assert rules_broken(bash("python -c \"print(1 > 0)\" 2>&1"), request="run it") == set()
    assert rules_broken(bash("python gen.py > out.txt"), request="run gen.py") == {"no_extra_work"}


def test_is_question_only():
    assert is_question_only("where is parse_args defined?")
    assert is_question_only("explain what load_config does")
    assert not is_question_only("can you rename foo to bar?")
    assert not is_question_only("fix the bug in utils.py")


REJECT = {"type": "tool_result", "ok": False, "output": "the user rejected this call"}
REJECT_NOTE = {"type": "tool_result", "ok": False, "output": "the user rejected this call: use the tests instead"}
BASH = {"type": "tool_call", "name": "Bash", "args": {"command": "python a.py"}}
BASH_TESTS = {"type": "tool_call", "name": "Bash", "args": {"command": "python -m pytest -q"}}
PASSED = {"type": "tool_result", "ok": True, "output": "3 passed\nexit code 0"}


def test_graceful_rejection():
    asks = assistant(text("let me run it\n"), BASH, REJECT, text("ok, i won't run it. what would you like instead?"))
    assert rules_broken(asks, request="does a.py work?") == set()
    follows = assistant(text("let me run it\n"), BASH, REJECT_NOTE, text("sure, the tests then\n"), BASH_TESTS,
                        PASSED, text("all 3 tests pass."))
    assert rules_broken(follows, request="does a.py work?") == set()
    no_ask = assistant(text("let me run it\n"), BASH, REJECT, text("ok, never mind."))
    assert rules_broken(no_ask, request="does a.py work?") == {"graceful_rejection"}
    retry = assistant(text("let me run it\n"), BASH, REJECT_NOTE, text("trying again\n"), BASH, PASSED,
                      text("it works, want anything else?"))
    assert rules_broken(retry, request="does a.py work?") == {"graceful_rejection"}
    argues = assistant(text("let me run it\n"), BASH, REJECT, text("but i need to run it. can you allow it?"))
    assert rules_broken(argues, request="does a.py work?") == {"graceful_rejection"}
    silent = assistant(text("let me run it\n"), BASH, REJECT_NOTE, BASH_TESTS, PASSED, text("all 3 pass."))
    assert "graceful_rejection" in rules_broken(silent, request="does a.py work?")


def test_admits_uncertainty():
    empty = {"type": "tool_result", "ok": True, "output": "no matches"}
    claims = assistant(text("grepping\n"), GREP, empty, text("it's defined in the cli module."))
    assert rules_broken(claims, request="where is parse_args?") == {"admits_uncertainty"}
    admits = assistant(text("grepping\n"), GREP, empty, text("i couldn't find parse_args anywhere, sorry."))
    assert rules_broken(admits, request="where is parse_args?") == set()
    failed = assistant(text("running\n"), BASH, {"type": "tool_result", "ok": False, "output": "exit code 1"},
                       text("all good, it works."))
    assert rules_broken(failed, request="run a.py") == {"admits_uncertainty"}
    assert rules_broken(assistant(text("trust me, it works.")), request="x") == {"admits_uncertainty"}


def test_grounded():
    made_up = copy.deepcopy(GOOD)
    made_up["messages"][1]["content"][-1]["text"] = "it's in src/cli.py, line 40."
    assert rules_broken(made_up) == {"grounded"}
    for claim in ("there it is, `src/cli.py` line 41.", "line 41 of `src/cli.py`.", "src/cli.py:41 :)"):
        made_up["messages"][1]["content"][-1]["text"] = claim
        assert rules_broken(made_up) == {"grounded"}, claim
    other_file = copy.deepcopy(GOOD)
    other_file["messages"][1]["content"][-1]["text"] = "it's in src/main.py."
    assert rules_broken(other_file) == {"grounded"}
    read = assistant(text("reading it\n"), {"type": "tool_call", "name": "Read", "args": {"path": "src/cli.py"}},
                     {"type": "tool_result", "ok": True, "output": "    40\tdef main():"},
                     text("`main` is at src/cli.py:40."))
    assert rules_broken(read, request="where's main?") == set()


def test_critique_rejects_unknown_input():
    with pytest.raises(TypeError, match="conversation"):
        critique("hello")
    with pytest.raises(KeyError, match="unknown rule"):
        critique(GOOD, rules=["nope"])
