"""The agentic eval: its tasks are scored by workspace and answer, through the real agent loop."""
import dataclasses

import pytest

from training.eval.agent_tasks import KINDS, Step, make_suite
from training.eval.agent import evaluate, idle_source, oracle_source, step_ids, summary_table


@pytest.fixture(scope="module")
def suite():
    return make_suite(per_kind=2, seed=0)


def test_the_suite_is_reproducible_and_covers_every_kind(suite):
    assert [t.kind for t in suite[:len(KINDS)]] == list(KINDS)
    again = make_suite(per_kind=2, seed=0)
    assert [(t.id, t.prompt, t.files) for t in again] == [(t.id, t.prompt, t.files) for t in suite]
    other = make_suite(per_kind=2, seed=1)
    assert [t.prompt for t in other] != [t.prompt for t in suite]
    with pytest.raises(ValueError, match="unknown task kind"):
        make_suite(kinds=("locate", "teleport"))


def test_a_scripted_perfect_policy_scores_100_percent(suite, tiny_tokenizer):
    result = evaluate(suite, lambda task: oracle_source(task, tiny_tokenizer), tiny_tokenizer)
    failures = [(r["id"], r["detail"]) for r in result["tasks"] if not r["success"]]
    assert failures == []
    assert result["success_rate"] == 1.0
    assert set(result["success_by_kind"]) == set(KINDS)
    assert result["well_formed_call_rate"] == 1.0
    assert result["turn_ends"] == {"done": len(suite)}
    # rename makes one Grep plus one Edit per file that uses the name; the average reflects every call
    assert result["steps_per_task"] == pytest.approx(sum(len(t.solution) - 1 for t in suite) / len(suite))
    assert len(result["transcripts"]) == len(KINDS)
    assert summary_table(result).rows[0] == ["task success", "1.000"]


def test_a_do_nothing_policy_scores_0_percent(suite, tiny_tokenizer):
    result = evaluate(suite, lambda task: idle_source(task, tiny_tokenizer), tiny_tokenizer)
    assert result["success_rate"] == 0.0
    assert all(rate == 0.0 for rate in result["success_by_kind"].values())
    assert result["steps_per_task"] == 0.0 and result["well_formed_call_rate"] is None


def test_doing_the_work_without_the_answer_or_with_damage_fails(suite, tiny_tokenizer):
    """Right calls, useless answer: only the kinds judged on the workspace alone pass. And a locate task
    whose policy also edits a file fails although its answer is right."""
    mute = [dataclasses.replace(t, solution=t.solution[:-1] + (Step(None, text="done."),)) for t in suite]
    result = evaluate(mute, lambda task: oracle_source(task, tiny_tokenizer), tiny_tokenizer)
    assert result["success_by_kind"] == {"locate": 0.0, "answer": 0.0, "rename": 1.0, "edit": 1.0,
                                         "create": 1.0, "run": 0.0}
    locate = suite[0]
    vandal = dataclasses.replace(locate, solution=(
        Step("Bash", {"command": "echo '# touched' >> main.py"}),) + locate.solution)
    broken = evaluate([vandal], lambda task: oracle_source(task, tiny_tokenizer), tiny_tokenizer)
    assert broken["success_rate"] == 0.0 and "changed files" in broken["tasks"][0]["detail"]


def test_malformed_calls_are_counted(suite, tiny_tokenizer):
    from agent.source import ScriptedSource

    tok = tiny_tokenizer
    bad = [tok.special("tool_call_start"), *tok.encode("Teleport"), tok.special("tool_call_end")]

    def source(task):
        return ScriptedSource([bad] + [step_ids(s, tok) for s in task.solution], context_len=4096)

    result = evaluate(suite[:1], source, tok)
    assert result["success_rate"] == 1.0
    assert result["well_formed_call_rate"] == pytest.approx(0.5)  # one Grep, one unknown tool
    assert result["steps_per_task"] == 2.0


def test_the_newer_kinds_score_100_percent_scripted_and_0_idle(tiny_tokenizer):
    from training.eval.agent_tasks import ALL_KINDS, NEW_KINDS
    suite = make_suite(per_kind=2, seed=3, kinds=NEW_KINDS)
    assert [t.kind for t in suite[:len(NEW_KINDS)]] == list(NEW_KINDS) and set(ALL_KINDS) > set(KINDS)
    result = evaluate(suite, lambda task: oracle_source(task, tiny_tokenizer), tiny_tokenizer)
    assert [(r["id"], r["detail"]) for r in result["tasks"] if not r["success"]] == []
    idle = evaluate(suite, lambda task: idle_source(task, tiny_tokenizer), tiny_tokenizer)
    assert idle["success_rate"] == 0.0
