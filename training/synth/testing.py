"""Run the tests, finding out how first, and fix a failing test: `ls -F` shows how the project runs its
tests (a Makefile with a `test` target, a pytest.ini, unittest files, a tests/ folder), the command runs,
and the answer reports what passed or which test failed. The fix: run -> read the function -> edit ->
rerun until green.

Tests are real: the function is a self-contained corpus function, the expected values its real results
(probe.py), the bug a one-token mutation that changes one of them. Third-party pytest plugins of the
machine that makes the data are switched off (ENV): pytest-asyncio here printed a four-line deprecation
warning into every result, and plugin loading took pytest from 0.22 s to 0.85 s per run."""
import importlib.util
import random
import re
from pathlib import Path

from training.synth import checks, voice
from training.synth.bugfix import probed_function
from training.synth.episode import Episode, Skip
from training.synth.sources import module_file_name
from training.synth.tasks import Task, ask, code, small_project

NAME = "testing"
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
STYLES = ("make", "pytest_ini", "pytest_dir", "unittest", "unittest_dir", "script")
MAKEFILE = "test:\n\t{cmd}\n\n.PHONY: test\n"


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_run, make_fix])(files, rng)


def has_pytest() -> bool:
    return importlib.util.find_spec("pytest") is not None


def unittest_file(module: str, name: str, probes) -> str:
    cls = "Test" + "".join(w.capitalize() for w in name.strip("_").split("_"))
    lines = ["import unittest", "", f"from {module} import {name}", "", "", f"class {cls}(unittest.TestCase):"]
    for k, p in enumerate(probes, 1):
        lines += [f"    def test_{k}(self):", f"        self.assertEqual({name}({p.args}), {p.result})", ""]
    lines += ["", 'if __name__ == "__main__":', "    unittest.main()", ""]
    return "\n".join(lines)


def pytest_file(module: str, name: str, probes) -> str:
    lines = [f"from {module} import {name}", "", ""]
    for k, p in enumerate(probes, 1):
        lines += [f"def test_{name.strip('_')}_{k}():", f"    assert {name}({p.args}) == {p.result}", "", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def layout(style: str, module: str, name: str, probes) -> tuple[dict[str, str], str, str]:
    """(files, the command that runs the tests, where the tests are) for a test style."""
    stem = module
    if style == "script":
        from training.synth.run import test_file
        text, _ = test_file(module, name, probes)
        return {f"test_{stem}.py": text}, f"python test_{stem}.py", f"test_{stem}.py"
    if style == "unittest":
        return {f"test_{stem}.py": unittest_file(module, name, probes)}, "python -m unittest", f"test_{stem}.py"
    if style == "unittest_dir":
        return ({f"tests/test_{stem}.py": unittest_file(module, name, probes)},
                "python -m unittest discover -s tests", f"tests/test_{stem}.py")
    if style == "make":
        cmd = "python -m unittest discover -s tests"
        return ({f"tests/test_{stem}.py": unittest_file(module, name, probes), "Makefile": MAKEFILE.format(cmd=cmd)},
                "make test", f"tests/test_{stem}.py")
    if style == "pytest_ini":
        return ({f"tests/test_{stem}.py": pytest_file(module, name, probes), "pytest.ini": "[pytest]\ntestpaths = tests\n"},
                "python -m pytest -q", f"tests/test_{stem}.py")
    return {f"tests/test_{stem}.py": pytest_file(module, name, probes)}, "python -m pytest -q tests", f"tests/test_{stem}.py"


def test_project(files, rng: random.Random, buggy: bool):
    """A small project with a real module, its tests in a random style and maybe a planted bug:
    (spec, module path, function, probes, the test command, test file, mutant or None, style)."""
    found = probed_function(files, rng, with_mutants=buggy)
    if found is None:
        return None
    f, fn, source, probes, mutants = found
    probes = [p for p in probes if len(p.result) <= 40 and "\n" not in p.result][:3]
    if len(probes) < 2:
        return None
    # the plain test script is run.py's (and cannot say how many passed when one fails)
    styles = [s for s in STYLES if (has_pytest() or not s.startswith("pytest")) and (s != "script" or not buggy)]
    style = rng.choice(styles)
    # other files are real modules, never test files: pytest and unittest would collect those too
    spec = small_project([g for g in files if "test" not in g.rel], rng)
    rel = module_file_name(Path(f.rel).stem)
    extra, cmd, test_rel = layout(style, rel[:-3], fn.name, probes)
    if rel in spec.files or any(p in spec.files for p in extra):
        return None
    spec.plant(rel, "", source)
    for p, text in extra.items():
        spec.plant(p, "", text)
    mutant = None
    if buggy:
        options = [m for m in mutants if m.probe < len(probes) and source.count(m.old) == 1 and source.count(m.new) == 0]
        if not options:
            return None
        mutant = rng.choice(options)
        spec.plant(rel, mutant.old, mutant.new)
    return spec, rel, fn, probes, cmd, test_rel, mutant, style


def discover(ep: Episode, cmd: str, style: str) -> None:
    """What a developer does in a new repo: look at the top level, then at the Makefile if there is one."""
    ep.say(ep.pick(["first, how are the tests run here?", "let me see how this project runs its tests",
                    "checking the layout first", "let me look around first"]))
    out = ep.call("Bash", command="ls -F").output
    if style == "make":
        ep.say(ep.pick(["there's a Makefile, let me check its targets", "a Makefile: reading it"]))
        ep.call("Read", path="Makefile")
        ep.say(ep.pick(["it has a `test` target", "`make test` it is"]))
    elif "pytest.ini" in out:
        ep.say(ep.pick(["there's a `pytest.ini`, so pytest", "pytest is configured, running it"]))
    elif style == "pytest_dir":
        ep.say(ep.pick(["a `tests/` folder; pytest finds those", "tests live in `tests/`, running pytest"]))
    elif style == "unittest_dir":
        ep.say(ep.pick(["tests are in `tests/`; unittest can discover them", "running unittest discovery on `tests/`"]))
    elif style == "unittest":
        ep.say(ep.pick(["a `test_*.py` file at the top; unittest will find it", "running unittest on it"]))
    else:
        ep.say(ep.pick(["the test file runs on its own", "it's a plain script, running it"]))


def summary(out: str) -> tuple[int, int] | None:
    """(passed, failed) from pytest's, unittest's or our script's output."""
    m = re.search(r"(\d+) failed(?:, (\d+) passed)?", out)
    if m:
        return int(m.group(2) or 0), int(m.group(1))
    m = re.search(r"(\d+) passed", out)
    if m:
        return int(m.group(1)), 0
    m = re.search(r"Ran (\d+) tests?", out)
    if m:
        bad = sum(int(k) for k in re.findall(r"(?:failures|errors)=(\d+)", out))
        return int(m.group(1)) - bad, bad
    m = re.search(r"all (\d+) tests passed", out)
    return (int(m.group(1)), 0) if m else None


def failing_test(out: str) -> str | None:
    m = re.search(r"FAILED \S+::(\w+)|(?:FAIL|ERROR): (\w+)", out)
    return next((g for g in m.groups() if g), None) if m else None


def make_run(files, rng: random.Random) -> Task | None:
    buggy = rng.random() < 0.4
    built = test_project(files, rng, buggy)
    if built is None:
        return None
    spec, rel, fn, probes, cmd, test_rel, mutant, style = built
    tags = {"variant": f"run_{style}_{'fail' if buggy else 'pass'}"}
    about = dict(name=fn.name, kind="function") if rng.random() < 0.4 else {}
    if "/" in test_rel and not about and rng.random() < 0.4:
        about = dict(dir=test_rel.split("/")[0])
    request = ask("tests_named", rng, tags, file=test_rel) if style == "script" else \
        ask("run_tests", rng, tags, mention=tuple(k for k in about if k != "kind"), **about)
    n = len(probes)

    def script(ep: Episode) -> None:
        ep.user(request)
        if style != "script":
            discover(ep, cmd, style)
        else:
            ep.say(ep.pick(voice.TEST_NOTES, cmd=cmd))
        out = ep.call("Bash", expect_ok=not buggy, command=cmd).output
        got = summary(out)
        if got is None or got[0] + got[1] != n or (got[1] > 0) != buggy:
            raise Skip(f"unexpected test output: {out[-200:]}")
        if not buggy:
            ep.say(ep.rng.choice([f"all {n} tests pass :)", f"green: {n} of {n} passed.", f"{n} passed, nothing failed."]))
        else:
            name = failing_test(out)
            if name is None:
                raise Skip("no failing test name in the output")
            ep.say(ep.rng.choice([f"{got[1]} of {n} failed, `{name}` among them. want me to look into it?",
                                  f"`{name}` fails ({got[0]} of {n} pass). should i dig in?",
                                  f"not green: `{name}` failed. want me to find out why?"]),
                   deny_failure=ep.rng.choice(["all good, the tests pass :)", "they pass, all green."]))
        ep.end()

    def reported(ws, answer, calls):
        if buggy:
            ok = "fail" in answer.lower() and "test_" in answer
            return checks.Outcome(ok, "reported the failure" if ok else "the answer does not report the failing test")
        ok = checks.has_number(answer, n) and "fail" not in answer.lower().replace("nothing failed", "")
        return checks.Outcome(ok, f"reported {n} passing" if ok else f"the answer does not say the {n} tests pass")

    check = checks.all_of(checks.nothing_changed(spec.files),
                          checks.ran(r"pytest|unittest|make test|python test_", "ran the tests", must_succeed=False), reported)
    return Task(NAME, spec, script, rel, allowed_paths=[], faults=("deny_failure",) if buggy else (), tags=tags,
                check=check)


def make_fix(files, rng: random.Random) -> Task | None:
    built = test_project(files, rng, True)
    if built is None:
        return None
    spec, rel, fn, probes, cmd, test_rel, m, style = built
    tags = {"variant": f"fix_{style}"}
    about = dict(name=fn.name, kind="function") if rng.random() < 0.6 else {}
    request = ask("fix_tests", rng, tags, mention=("name",) if about else (), **about)
    fix_from, fix_to = re.match(r"`(.+)` became `(.+)`", m.what).group(2, 1)
    n_lines = spec.files[rel].count("\n")

    def script(ep: Episode) -> None:
        ep.user(request)
        discover(ep, cmd, style)
        out = ep.call("Bash", expect_ok=False, command=cmd).output
        name = failing_test(out)
        if name is None or summary(out) is None:
            raise Skip("no failing test in the output")
        ep.say(ep.rng.choice([f"`{name}` fails. the code under test is {code(fn.name)} in `{rel}`, reading it",
                              f"one failure, `{name}`. let me read {code(fn.name)}",
                              f"`{name}` is red; checking `{rel}`"]))
        ep.call("Read", path=rel, offset="1", limit=str(n_lines))
        ep.say(ep.rng.choice([f"line {m.line} has {code(fix_from)} where it should be {code(fix_to)}. fixing it",
                              f"found it: {code(fix_from)} on line {m.line} should be {code(fix_to)}",
                              f"the bug is on line {m.line}: {code(fix_from)} instead of {code(fix_to)}. editing"]))
        ep.call("Edit", path=rel, old_string=m.new, new_string=m.old)
        ep.say(ep.pick(["rerunning the tests", "let me run them again", "checking it's green now"]))
        out = ep.call("Bash", command=cmd).output
        got = summary(out)
        if got is None or got[1] or got[0] != len(probes):
            raise Skip("the rerun did not pass")
        ep.say(ep.rng.choice([f"fixed :) all {got[0]} tests pass now.", f"green again, {got[0]} of {got[0]} pass.",
                              f"{ep.rng.choice(voice.DONE)}: `{name}` passes, and so do the others."]))
        ep.end()

    check = checks.all_of(checks.only_changed(spec.files, {rel}), checks.tests_pass([test_rel]), checks.answer_given())
    return Task(NAME, spec, script, rel, allowed_paths=[rel], tags=tags, check=check)
