"""Rollouts (training/eval/rollout.py): many tasks at once through the batched real agent loop and real tools."""
import time

from training.eval.agent import step_ids
from training.eval.agent_tasks import KINDS, AgentTask, Outcome, make_suite
from training.eval.rollout import run_rollouts


class ScriptedBatchSampler:
    """A stand-in for Sampler.generate_batch that plays each task's scripted solution: it finds the task by
    its request in the prompt and the step by the number of tool results so far (for testing the harness,
    never the product)."""

    def __init__(self, tasks, tok, seq_len=4096, delay=0.0):
        self.tasks, self.tok, self.delay = tasks, tok, delay
        self.config = type("C", (), {"seq_len": seq_len})()
        self.batch_sizes = []

    def generate_batch(self, prompts, max_new_tokens, temperature=0.0, top_k=None, top_p=None, stop=(), seed=0):
        self.batch_sizes.append(len(prompts))
        time.sleep(self.delay)
        out = []
        for ids in prompts:
            text = self.tok.decode([i for i in ids if i not in self.tok.special_ids])
            task = next(t for t in self.tasks if t.prompt in text)
            step = sum(i == self.tok.special("tool_result_start") for i in ids)
            out.append(step_ids(task.solution[step], self.tok))
        return out


def test_scripted_rollouts_of_every_kind_succeed_batched(tiny_tokenizer):
    tasks = make_suite(per_kind=1, seed=5)  # one per kind: the script tells tasks apart by their request
    sampler = ScriptedBatchSampler(tasks, tiny_tokenizer)
    rollouts, speed = run_rollouts(tasks, sampler, tiny_tokenizer, samples=4, rows=32, max_wait_s=2.0)
    assert [(r.task_id, r.sample) for r in rollouts] == [(t.id, k) for t in tasks for k in range(4)]
    assert [(r.task_id, r.detail) for r in rollouts if not r.success] == []
    assert {r.kind for r in rollouts} == set(KINDS)
    assert all(r.malformed == 0 and r.repeated_failures == 0 and r.end == "done" for r in rollouts)
    assert all(r.generated_tokens > 0 for r in rollouts)
    # 24 rows decode together: far fewer device calls than generations
    generations = sum(len(t.solution) for t in tasks) * 4
    assert speed["batches"] < generations / 4
    assert all(n & (n - 1) == 0 for n in sampler.batch_sizes)  # padded to powers of two: few programs
    assert speed["rollouts"] == 24 and speed["tokens_per_s"] > 0


def test_a_rollout_past_its_deadline_is_cut_and_fails(tiny_tokenizer):
    task = make_suite(per_kind=1, seed=0, kinds=("run",))[0]
    slow = ScriptedBatchSampler([task], tiny_tokenizer, delay=1.0)
    started = time.perf_counter()
    [r], _ = run_rollouts([task], slow, tiny_tokenizer, deadline_s=0.3)
    assert not r.success and r.end == "deadline" and "cut after 0.3 s" in r.detail
    assert time.perf_counter() - started < 5


def test_a_checker_sees_the_workspace_the_rollout_left(tiny_tokenizer):
    seen = []

    def check(ws, answer, calls):
        seen.append(sorted(p.name for p in ws.iterdir()))
        return Outcome(True, "ok")
    base = make_suite(per_kind=1, seed=0, kinds=("create",))[0]
    task = AgentTask("c", "create", base.prompt, {"a.txt": "x"}, base.solution, check)
    [r], _ = run_rollouts([task], ScriptedBatchSampler([task], tiny_tokenizer), tiny_tokenizer)
    assert r.success and seen and "a.txt" in seen[0] and len(seen[0]) == 2  # a.txt and the created script
