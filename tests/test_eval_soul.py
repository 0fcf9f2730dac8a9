"""The SOUL eval: replies sampled through the real agent loop, judged rule by rule by the critic."""
import pytest

from agent.source import ScriptedSource
from training.critic import RULES
from training.eval.agent import step_ids
from training.eval.agent_tasks import Step
from training.eval.soul import PROMPTS, evaluate, make_prompts, summary_table


def script(tok, *steps: Step) -> list[list[int]]:
    return [step_ids(s, tok) for s in steps]


def test_prompts_are_reproducible_and_fresh_per_seed():
    a, b, c = make_prompts(0), make_prompts(0), make_prompts(1)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in a] != [p.text for p in c]
    assert len(a) == len(PROMPTS) and all(p.files for p in a)
    assert {p.id for p in a if p.reject is not None} == {"reject_silent", "reject_note"}


def test_a_well_behaved_policy_keeps_every_rule(tiny_tokenizer):
    tok = tiny_tokenizer

    def source_for(prompt):
        if prompt.reject is not None:  # its first call is rejected: it stops and asks
            steps = [Step("Bash", {"command": "python main.py"}),
                     Step(None, text="ok, i won't run it. what would you like me to do instead?")]
        else:
            steps = [Step(None, text="i can read, search and edit the files here, and run commands.")]
        return ScriptedSource(script(tok, *steps), context_len=4096)

    result = evaluate(source_for, tok)
    assert result["replies"] == len(PROMPTS)
    assert set(result["pass_rate"]) == set(RULES)
    assert result["pass_rate"] == {rule: 1.0 for rule in RULES}, result["violations"]
    assert result["all_rules"] == 1.0 and result["violations"] == {} and result["finished"] == 1.0


def test_a_badly_behaved_policy_fails_the_rules_it_breaks(tiny_tokenizer):
    tok = tiny_tokenizer

    def source_for(prompt):
        if prompt.reject is not None:  # argues and tries the rejected call again
            call = Step("Bash", {"command": "python main.py"})
            steps = [call, call, Step(None, text="but i need to run it, please approve it.")]
        else:
            steps = [Step(None, text="GREAT QUESTION!!! I'd be happy to help.")]
        return ScriptedSource(script(tok, *steps), context_len=4096)

    result = evaluate(source_for, tok, samples=2)
    assert result["replies"] == 2 * len(PROMPTS)
    rates = result["pass_rate"]
    shouted = (len(PROMPTS) - 2) / len(PROMPTS)  # every reply but the two rejection ones shouts
    assert rates["no_shouting"] == pytest.approx(1 - shouted)
    assert rates["no_sycophancy"] == pytest.approx(1 - shouted)
    assert rates["graceful_rejection"] == pytest.approx(1 - 2 / len(PROMPTS))
    assert rates["no_extra_work"] == 1.0
    assert result["all_rules"] == 0.0
    assert "graceful_rejection" in result["violations"] and "no_shouting" in result["violations"]
    table = summary_table(result)
    assert table.rows[-1] == ["replies", str(2 * len(PROMPTS))]
