"""Every new synth family's scripted teacher, replayed through the real agent loop in a fresh workspace,
scores 100% on the family's own checker; the loop's tool results equal the teacher's; the critic passes
the teacher; and the checkers are not vacuous (doing nothing fails them)."""
import random
from collections import defaultdict

import pytest

from training.critic import critique
from training.synth import (chat, count, create, delete, docstring, explore, read, recover, renames, testing,
                            usages, values)
from training.synth.replay import replay, results, same_results, sample_tasks
from training.synth.sources import load_pool

from test_synth import make_src

FAMILIES = [read, explore, count, usages, testing, create, docstring, delete, renames, chat, recover, values]
# The behaviours issue 15 asks for, by family: each must show up among the sampled tasks.
MUST_SEE = {
    "read": {"whole", "text", "span", "head"},
    "explore": {"list", "overview_readme"},
    "testing": {"fix_"},
    "create": {"named", "then_run"},
    "chat": {"greet", "ask_"},
    "recover": {"typo_", "replace_all", "find_file", "exact_text"},
    "usages": {"usages", "todos_"},
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    src = make_src(tmp_path_factory.mktemp("famsrc"))
    return load_pool(src=src, val_fraction=0.05, max_files=50)


@pytest.fixture(autouse=True)
def _plain_pytest(monkeypatch):
    monkeypatch.setenv(*next(iter(testing.ENV.items())))


@pytest.fixture(scope="module")
def sampled(pool):
    import os
    os.environ.update(testing.ENV)
    files = pool.train + pool.val
    return {fam.NAME: sample_tasks(fam, files, 14, seed=5) for fam in FAMILIES}


@pytest.mark.parametrize("family", [f.NAME for f in FAMILIES])
def test_the_teacher_scores_100_percent_through_the_agent_loop(family, sampled, tiny_tokenizer):
    tasks = sampled[family]
    assert len(tasks) >= 6, f"only {len(tasks)} {family} tasks from the test sources"
    variants = set()
    for task, seed, conv in tasks:
        variants.add(task.tags.get("variant", ""))
        assert task.check is not None
        assert critique({"messages": conv, "meta": {"allowed_paths": task.allowed_paths}}) == [], task.tags
        r = replay(task, seed, tiny_tokenizer, teacher=conv)
        assert r.outcome.success, (task.tags, r.outcome.detail, conv)
        assert same_results(r), (task.tags, results(r.teacher), results(r.agent_messages))
    for want in MUST_SEE.get(family, ()):
        assert any(v.startswith(want) for v in variants), (family, want, variants)


def test_doing_nothing_fails_every_checker_but_small_talk(sampled, tmp_path):
    for family, tasks in sampled.items():
        for k, (task, seed, conv) in enumerate(tasks):
            if family == "chat":
                continue
            ws = task.spec.build(tmp_path / f"{family}{k}")
            outcome = task.check(ws, "i'd rather not touch anything.", [])
            assert not outcome.success, (family, task.tags)


def test_no_tool_answers_make_no_call_and_history_questions_need_the_history(sampled):
    by_variant = defaultdict(list)
    for task, seed, conv in sampled["chat"]:
        by_variant[task.tags["variant"]].append(conv)
        last = conv[-1]
        assert all(p["type"] == "text" for p in last["content"])
    assert any(len(c) == 4 for convs in by_variant.values() for c in convs)  # a question about the conversation


def test_recovery_never_repeats_a_failed_call(sampled):
    for task, seed, conv in sampled["recover"] + sampled["testing"]:
        failed = set()
        for m in conv[1::2]:
            parts = m["content"]
            for call, res in zip(parts, parts[1:]):
                if call["type"] != "tool_call":
                    continue
                key = (call["name"], tuple(sorted(call["args"].items())))
                assert key not in failed, (task.tags, key)
                if not res["ok"] and call["name"] != "Bash":  # a failing test run may be rerun after the fix
                    failed.add(key)


def test_the_program_bank_is_right(tmp_path):
    """Every kind's expected output is what its program prints (the create family relies on it)."""
    import subprocess
    import sys
    from training.synth import programs
    for kind in programs.KINDS:
        for s in range(3):
            p = kind(random.Random(s))
            d = tmp_path / f"{kind.__name__}{s}"
            d.mkdir()
            for name, text in p.data.items():
                (d / name).write_text(text)
            (d / "prog.py").write_text(p.source)
            out = subprocess.run([sys.executable, "prog.py"], cwd=d, capture_output=True, text=True, timeout=20)
            assert out.stdout.rstrip("\n") == p.expected, (kind.__name__, p.what)
            assert p.what and p.task and p.what != p.task
    assert len(programs.KINDS) >= 30


def test_sources_are_only_read(pool):
    """Planting edits never mutates the pool's files (each task copies what it changes)."""
    before = {f.key: f.text for f in pool.train}
    for fam in FAMILIES:
        for i in range(6):
            fam.make(pool.train, random.Random(i))
    assert {f.key: f.text for f in pool.train} == before
