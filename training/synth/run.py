"""Run a command or the tests with Bash, and report what happened (a failure plainly, without fixing
anything unasked)."""
import random
from pathlib import Path

from training.synth import voice
from training.synth.bugfix import probed_function
from training.synth.episode import Episode, Skip
from training.synth.sources import module_file_name
from training.synth.tasks import Task, ask, code, small_project

NAME = "run"


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_tests, make_tests, make_eval, make_list])(files, rng)  # wc: count.py


def test_file(module: str, name: str, probes) -> tuple[str, list[str]]:
    tests, lines = [], [f"from {module} import {name}", "", ""]
    for k, p in enumerate(probes, 1):
        tests.append(f"test_{name.strip('_')}_{k}")
        lines += [f"def {tests[-1]}():", f"    assert {name}({p.args}) == {p.result}", "", ""]
    lines += ['if __name__ == "__main__":', f"    for test in ({', '.join(tests)},):", "        test()",
              f'    print("all {len(tests)} tests passed")', ""]
    return "\n".join(lines), tests




def make_tests(files, rng: random.Random) -> Task | None:
    found = probed_function(files, rng)
    if found is None:
        return None
    f, fn, source, probes, mutants = found
    probes = [p for p in probes if len(p.result) <= 40][:3]
    if len(probes) < 2:
        return None
    spec = small_project(files, rng)
    rel = module_file_name(Path(f.rel).stem)
    test_rel = f"test_{rel}"
    if rel in spec.files or test_rel in spec.files:
        return None
    text, tests = test_file(rel[:-3], fn.name, probes)
    spec.plant(rel, "", source)
    spec.plant(test_rel, "", text)
    broken = [m for m in mutants if m.probe < len(probes) and source.count(m.old) == 1]
    buggy = bool(broken) and rng.random() < 0.5
    if buggy:
        m = rng.choice(broken)
        spec.plant(rel, m.old, m.new)
        failing, failing_probe = tests[m.probe], probes[m.probe]
    tags = {"variant": "tests_fail" if buggy else "tests_pass"}
    named = rng.random() < 0.4
    request = ask("tests_named", rng, tags, file=test_rel) if named else ask("run_tests", rng, tags)
    look_first = not named and rng.random() < 0.5
    cmd = f"python {test_rel}"

    def script(ep: Episode) -> None:
        ep.user(request)
        if look_first:
            ep.say(ep.pick(["let me see what's here first", "first, what files are there?"]))
            ep.call("Bash", command="ls")
        ep.say(ep.pick(voice.TEST_NOTES, cmd=cmd))
        out = ep.call("Bash", expect_ok=not buggy, command=cmd).output
        if not buggy:
            ep.say(ep.rng.choice([f"all {len(tests)} tests pass :)", f"they pass! {len(tests)} of {len(tests)}.",
                                  f"green: `{test_rel}` ran all {len(tests)} tests fine."]))
        else:
            if "AssertionError" not in out:
                raise Skip("the failing test did not fail on its assert")
            check = f"{fn.name}({failing_probe.args}) == {failing_probe.result}"
            ep.say(ep.rng.choice([f"`{failing}` fails: the assert {code(check)} doesn't hold. want me to look into it?",
                                  f"one failure: {code(check)} is false in `{failing}`. should i dig in?",
                                  f"the tests failed at `{failing}` ({code(check)}). want me to investigate?"]),
                   deny_failure=ep.rng.choice(["all good, the tests pass :)", "they pass, all green."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[], faults=("deny_failure",) if buggy else (),
                tags=tags)




def make_eval(files, rng: random.Random) -> Task | None:
    found = probed_function(files, rng, with_mutants=False)
    if found is None:
        return None
    f, fn, source, probes, _ = found
    probes = [p for p in probes if "\n" not in p.printed and p.printed.strip() and len(p.printed) <= 40]
    if not probes:
        return None
    p = rng.choice(probes)
    spec = small_project(files, rng)
    rel = module_file_name(Path(f.rel).stem)
    if rel in spec.files:
        return None
    spec.plant(rel, "", source)
    call = f"{fn.name}({p.args})"
    tags = {"variant": "eval"}
    request = ask("eval_call", rng, tags, call=call)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me run it", "running it", "let me try it"]))
        out = ep.call("Bash", command=f'python -c "from {rel[:-3]} import {fn.name}; print({call})"').output
        if out != f"{p.printed}\n[exit code 0]":
            raise Skip("unexpected output")
        ep.say(ep.rng.choice([f"it returns {code(p.printed)}.", f"{code(call)} gives {code(p.printed)}.",
                              f"{code(p.printed)} :)"]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags)


def make_list(files, rng: random.Random) -> Task | None:
    spec = small_project(files, rng, extra=rng.randint(1, 3))
    dirs = sorted({p.split("/")[0] for p in spec.files if "/" in p})
    where = rng.choice(dirs) if dirs and rng.random() < 0.5 else None
    tags = {}
    request = ask("list_py", rng, tags, mention=("dir",) if where else (), dir=where)
    where = where if where and where in request else None
    tags["variant"] = "list_dir" if where else "list"

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me list them", "a quick `find` will do", "listing them"]))
        out = ep.call("Bash", command=f"find {where or '.'} -name '*.py' | sort").output
        found = [line.removeprefix("./") for line in out.splitlines() if line.startswith(f"{where or '.'}/")]
        if not found or len(found) > 5:
            raise Skip("unexpected file list")
        listed = ", ".join(f"`{p}`" for p in found)
        ep.say(f"{len(found)} of them: {listed}." if len(found) > 1 else f"just one: {listed}.")
        ep.end()

    return Task(NAME, spec, script, next(iter(spec.sources.values()), ""), allowed_paths=[], tags=tags)
