"""HumanEval harness: the sandbox, extraction from replies, pass@k, and generation with a tiny real model."""
import math
import time

import pytest

from training.eval.humaneval import (Problem, base_completion, body_indent, cut_at_stops, evaluate, extract_function,
                                     load_problems, pass_at_k, program, prompt_ids, score)
from training.eval.sandbox import Limits, probe_isolation, run_python

FAST = Limits(timeout_s=3.0, cpu_s=1, memory_mb=256, output_kb=64)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems()


def test_all_164_problems_ship_with_the_package(problems):
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0" and problems[-1].task_id == "HumanEval/163"


def test_pass_at_k_matches_the_combinatorial_formula():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 1, 10), (5, 0, 1), (5, 5, 5), (7, 4, 4)]:
        expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_canonical_solutions_pass_and_wrong_ones_fail(problems):
    few = problems[:6]
    result = score(few, [[p.canonical_solution, "    return None\n"] for p in few], ks=(1, 2), limits=FAST)
    assert [q["passed"] for q in result["per_problem"]] == [1] * 6
    assert result["pass@1"] == pytest.approx(0.5) and result["pass@2"] == pytest.approx(1.0)
    assert result["statuses"] == {"passed": 6, "failed": 6}


def test_an_endless_loop_and_an_endless_allocation_are_stopped(problems):
    p = problems[2]
    spin = "    while True:\n        pass\n"
    sleep = "    import time\n    time.sleep(1000)\n"
    hog = "    blocks = []\n    while True:\n        blocks.append(bytearray(16 << 20))\n"
    r = run_python(program(p, spin), Limits(timeout_s=60.0, cpu_s=1))
    assert r.status == "killed" and "SIGXCPU" in r.output and r.seconds < 30  # RLIMIT_CPU, not the wall clock
    r = run_python(program(p, sleep), Limits(timeout_s=1.0, cpu_s=60))
    assert r.status == "timeout" and r.seconds < 10  # sleeping uses no CPU: the wall clock stops it
    r = run_python(program(p, hog), Limits(timeout_s=60.0, memory_mb=256))
    assert r.status == "failed" and "MemoryError" in r.output and r.seconds < 30  # RLIMIT_AS
    # and through the harness, in parallel: both are stopped and scored as failures
    start = time.monotonic()
    result = score([p, p], [[spin], [hog]], limits=FAST)
    assert result["pass@1"] == 0.0 and time.monotonic() - start < 20
    assert result["per_problem"][0]["statuses"][0] in ("killed", "timeout")  # CPU limit, or wall clock under load
    assert result["per_problem"][1]["statuses"] == ["failed"]


def test_exiting_early_with_status_0_is_not_a_pass(problems):
    p = problems[2]
    cheats = ["    raise SystemExit(0)\n", "    exit(0)\n", "    import os\n    os._exit(0)\n",
              "    return 0\nimport sys\nsys.exit(0)\n"]
    result = score([p] * len(cheats), [[c] for c in cheats], limits=FAST)
    assert result["pass@1"] == 0.0 and result["statuses"] == {"failed": len(cheats)}
    assert run_python(program(p, cheats[0]), FAST).passed  # what the sandbox alone would have called a pass


def test_sandbox_output_is_capped_and_children_are_killed(tmp_path):
    r = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n", FAST)
    assert not r.passed and len(r.output) <= (FAST.output_kb << 10) + 200
    marker = tmp_path / "child-alive"
    forker = (f"import os, time\nif os.fork() == 0:\n    time.sleep(1)\n    open({str(marker)!r}, 'w')\n"
              "print('parent done')\n")
    assert run_python(forker, FAST).passed
    time.sleep(1.5)
    assert not marker.exists()  # the forked child died with the process group


def test_sandbox_has_no_network_where_the_platform_allows():
    iso = probe_isolation()
    if not iso.net_prefix:
        pytest.skip("unshare is not available here: the sandbox runs with the network on")
    r = run_python("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                   "assert s.connect_ex(('1.1.1.1', 80)) != 0\n", FAST)
    assert r.passed, r.output


def test_sandbox_keeps_writes_inside_its_directory(tmp_path):
    target = tmp_path / "outside.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert not r.passed and not target.exists()
    assert run_python("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())\n", FAST).passed


def test_extracting_the_function_from_a_chat_reply(problems):
    p = problems[0]
    body = p.canonical_solution
    whole = f"from typing import List\n\ndef {p.entry_point}(numbers: List[float], threshold: float) -> bool:\n{body}"
    replies = [
        f"here it is:\n```python\n{whole}```\nit compares every pair.",
        f"sure\n```py\n{whole}\nif __name__ == '__main__':\n    print(input())\n```",  # demo code dropped
        f"```\n{body}```",                      # only the body, in a bare fence
        f"```python\n{whole}",                  # the reply was cut before the closing fence
        "```python\nprint('unrelated')\n```\nand the function:\n```python\n" + whole + "```",
        f"no fence at all, just the code:\n\ndef {p.entry_point}(numbers, threshold):\n{body}",
    ]
    for reply in replies:
        completion = extract_function(reply, p)
        assert run_python(program(p, completion), FAST).passed, reply
    assert not run_python(program(p, extract_function("i don't know.", p)), FAST).passed


def test_base_completions_stop_at_the_next_top_level_statement():
    text = "    return x + 1\n\n\ndef other():\n    pass\n"
    assert cut_at_stops(text) == "    return x + 1\n\n"
    assert cut_at_stops("    return 1\nprint(f(2))") == "    return 1"
    assert cut_at_stops("    return 1") == "    return 1"


def test_base_prompt_ends_with_the_body_indentation_and_the_program_is_the_solution(problems, tiny_tokenizer):
    """A base model is given the prompt plus the body's indentation (the pre-tokenizer glues newline and
    indentation into one token); what it writes after that, put back behind the whole prompt, is the program."""
    for p in problems[:20]:
        indent = body_indent(p.prompt)
        assert indent == "    "  # every docstring-ending prompt here opens a 4-space body
        ids = prompt_ids(p, tiny_tokenizer, "base")
        assert tiny_tokenizer.decode(ids[1:]) == p.prompt + indent
        solution = p.canonical_solution
        assert solution.startswith(indent)
        assert base_completion(solution[len(indent):], p) == cut_at_stops(solution)
    assert body_indent("def f():\n    return 1") == ""  # no trailing newline: nothing to add
    canonical = [[base_completion(p.canonical_solution[4:], p)] for p in problems[:5]]
    assert score(problems[:5], canonical, limits=FAST)["pass@1"] == 1.0


def test_generation_with_a_tiny_model_runs_end_to_end(problems, tiny_tokenizer):
    from flax import nnx

    from nanocode.model import GPT, ModelConfig
    from nanocode.sampler import Sampler

    model = GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=512), rngs=nnx.Rngs(0))
    sampler = Sampler(model)
    for mode in ("base", "chat"):
        result = evaluate(sampler, tiny_tokenizer, problems[:2], mode=mode, samples=2, ks=(1, 2),
                          temperature=1.0, max_new_tokens=16, batch_size=3, limits=FAST)
        assert result["mode"] == mode and result["problems"] == 2 and result["samples_per_problem"] == 2
        assert sum(result["statuses"].values()) == 4
        assert result["pass@1"] == 0.0  # an untrained model writes noise; the point is the whole path runs
        assert all("reply" in s for s in result["samples"])
