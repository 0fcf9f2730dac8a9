"""The seen/unseen phrasing eval: the split does not leak, a scripted perfect policy scores 100% on both
splits (made-up projects and real files), and repeated identical failed calls are counted."""
import pytest

from training.eval.agent import oracle_source, step_ids
from training.eval.agent_tasks import ALL_KINDS
from training.eval.agent import repeated_failures
from training.eval.phrasing_split import (evaluate_split, made_up_suites, real_file_suites,
                                          split_suites)
from training.synth import phrasing, testing

from test_synth import make_src


@pytest.fixture(scope="module")
def suites():
    return made_up_suites(per_kind=1, seed=4)


def test_the_split_does_not_leak(suites):
    held = phrasing.held_out_ids()
    assert suites["seen"] and suites["unseen"]
    assert all(t.pattern and t.pattern not in held for t in suites["seen"])
    assert all(t.pattern in held for t in suites["unseen"])
    seen_prompts = {t.prompt for t in suites["seen"]}
    assert not seen_prompts & {t.prompt for t in suites["unseen"]}
    # the same tasks on both sides, every kind asked both ways
    strip = lambda ts: {t.id.rsplit("/", 1)[0] for t in ts}
    assert strip(suites["seen"]) == strip(suites["unseen"])
    assert {t.kind for t in suites["unseen"]} == set(ALL_KINDS)


def test_a_perfect_policy_scores_100_percent_on_both_splits(suites, tiny_tokenizer):
    result = evaluate_split(suites, lambda task: oracle_source(task, tiny_tokenizer), tiny_tokenizer)
    for split in ("seen", "unseen"):
        failed = [(r["id"], r["prompt"], r["detail"]) for r in result[split]["tasks"] if not r["success"]]
        assert failed == []
        assert result[split]["repeated_failed_call_turns"] == 0.0
    assert result["gap"] == 0.0 and set(result["by_kind"]) == set(ALL_KINDS)


def test_real_files_too(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv(*next(iter(testing.ENV.items())))
    real = real_file_suites(per_family=1, seed=1, src=make_src(tmp_path / "src"))
    assert len(real["seen"]) >= 8 and len(real["unseen"]) >= 8
    held = phrasing.held_out_ids()
    assert all(t.pattern in held for t in real["unseen"]) and all(t.pattern not in held for t in real["seen"])
    result = evaluate_split(real, lambda task: oracle_source(task, tiny_tokenizer), tiny_tokenizer, max_steps=20)
    for split in ("seen", "unseen"):
        assert [(r["id"], r["detail"]) for r in result[split]["tasks"] if not r["success"]] == []


def test_repeated_failed_calls_are_counted(suites, tiny_tokenizer):
    from agent.source import ScriptedSource
    assert repeated_failures([("Read", {"path": "x"}, False), ("Read", {"path": "x"}, False),
                              ("Read", {"path": "y"}, True), ("Read", {"path": "y"}, True)]) == 1
    task = next(t for t in suites["unseen"] if t.kind == "locate")
    tok = tiny_tokenizer
    bad = [tok.special("tool_call_start"), *tok.encode("Read"), tok.special("tool_arg"), *tok.encode("path"),
           tok.special("tool_val"), *tok.encode("nope.py"), tok.special("tool_call_end")]

    def source(t):
        return ScriptedSource([bad, bad] + [step_ids(s, tok) for s in t.solution], context_len=4096)

    result = evaluate_split({"unseen": [task]}, source, tok)
    assert result["unseen"]["repeated_failed_calls"] == 1 and result["unseen"]["repeated_failed_call_turns"] == 1.0
    assert result["unseen"]["success_rate"] == 1.0


def test_split_suites_combines_both(tmp_path, monkeypatch):
    monkeypatch.setenv(*next(iter(testing.ENV.items())))
    both = split_suites(per_kind=1, seed=0, kinds=("locate", "read"), src=make_src(tmp_path / "src"), per_family=1)
    kinds = {t.kind for t in both["seen"]}
    assert {"locate", "read"} <= kinds and any(k.startswith("real:") for k in kinds)


def test_a_rerun_after_a_fix_is_not_a_repeat():
    run = ("Bash", {"command": "python -m unittest"})
    assert repeated_failures([(*run, False), ("Edit", {"path": "a.py"}, True), (*run, True)]) == 0
    assert repeated_failures([(*run, False), ("Read", {"path": "a.py"}, True), (*run, False)]) == 1
