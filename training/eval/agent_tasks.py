"""The agentic eval's tasks: small made-up projects (held out: generated here, never in any corpus) and six
kinds of request on them, each scored by the workspace it leaves behind and the answer it gives.

    locate    where is function f defined?            answer names the file and the line; nothing changed
    answer    what is the value of CONSTANT?          answer holds the value; nothing changed
    rename    rename function f to g everywhere       no f left, g defined, the program prints as before
    edit      change CONSTANT from v to w             CONSTANT == w, every other setting and file as before
    create    write script.py that prints X           the script exists and prints exactly X
    run       run `python main.py`, tell me the output  a Bash call ran it and the answer holds the output

Names and numbers come from a seeded generator, so a suite is reproducible and its answers cannot be
recalled from training data. Each task also carries `solution`, a scripted perfect policy (the tool calls
and the final answer), which the tests run through the real agent loop to check that it scores 100%.
"""
import ast
import random
import re
from pathlib import Path

from training.eval.sandbox import run_python
from training.eval.task_kit import (CHECK_LIMITS, KINDS, VERBS, WORDS, AgentTask, Outcome, Project, Step,  # noqa: F401
                                    changed_files, has_number, line_of, make_project, run_main, settings,
                                    snapshot, write_files)


# --- the six kinds ---------------------------------------------------------------------------------

def task_locate(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    role = rng.choice(["scale", "keep", "label", "total"])
    name = p.functions[role]
    rel = f"{p.package}/{'core' if role == 'total' else 'util'}.py"
    line = line_of(p.files[rel], f"def {name}(")

    def check(ws, answer, calls):
        changed = changed_files(ws, p.files)
        if changed:
            return Outcome(False, f"a question changed files: {', '.join(changed)}")
        if Path(rel).name not in answer:
            return Outcome(False, f"the answer does not name {rel}")
        if not has_number(answer, line):
            return Outcome(False, f"the answer does not give line {line}")
        return Outcome(True, f"named {rel}:{line}")

    return AgentTask(f"locate-{i}", "locate", f"where is the function `{name}` defined? "
                     "give the file and the line number.", p.files,
                     (Step("Grep", {"pattern": f"def {name}\\("}),
                      Step(None, text=f"it's defined in {rel}, line {line}.")), check,
                     slots=dict(name=name, kind="function"))


def task_answer(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    const = rng.choice(sorted(p.constants))
    value = p.constants[const]
    rel = f"{p.package}/config.py"

    def check(ws, answer, calls):
        changed = changed_files(ws, p.files)
        if changed:
            return Outcome(False, f"a question changed files: {', '.join(changed)}")
        if not has_number(answer, value):
            return Outcome(False, f"the answer does not contain {const}'s value {value}")
        return Outcome(True, f"answered {value}")

    return AgentTask(f"answer-{i}", "answer", f"what is `{const}` set to in this project?", p.files,
                     (Step("Grep", {"pattern": f"{const} ="}),
                      Step(None, text=f"`{const}` is {value}, set in {rel}.")), check,
                     slots=dict(name=const, kind="constant"))


def task_rename(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    role = rng.choice(["scale", "keep", "label"])
    old = p.functions[role]
    new = f"{rng.choice([v for v in VERBS if not old.startswith(v)])}_{rng.choice(WORDS)}"
    users = [rel for rel, text in p.files.items() if re.search(rf"\b{old}\b", text)]

    def check(ws, answer, calls):
        now = snapshot(ws)
        left = [rel for rel, text in now.items() if rel.endswith(".py") and re.search(rf"\b{old}\b", text)]
        if left:
            return Outcome(False, f"{old} is still used in {', '.join(left)}")
        util = now.get(f"{p.package}/util.py", "")
        if not re.search(rf"^def {new}\(", util, re.MULTILINE):
            return Outcome(False, f"{p.package}/util.py does not define {new}")
        ok, out = run_main(ws)
        if not ok or out != p.output:
            return Outcome(False, f"main.py no longer prints {p.output!r}: {out[-300:]!r}")
        return Outcome(True, f"renamed in {len(users)} files, main.py still prints {p.output!r}")

    steps = [Step("Grep", {"pattern": rf"\b{old}\b"})]
    steps += [Step("Edit", {"path": rel, "old_string": old, "new_string": new, "replace_all": "true"})
              for rel in users]
    steps.append(Step(None, text=f"renamed `{old}` to `{new}` in {', '.join(users)}."))
    return AgentTask(f"rename-{i}", "rename", f"rename the function `{old}` to `{new}` everywhere in the "
                     "project.", p.files, tuple(steps), check, slots=dict(name=old, new=new, kind="function"))


def task_edit(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    const = rng.choice(sorted(p.constants))
    old = p.constants[const]
    new = old + rng.choice([-1, 1]) * rng.randint(1, old - 1) if old > 2 else old + 5
    rel = f"{p.package}/config.py"
    expected = {**p.constants, const: new}

    def check(ws, answer, calls):
        others = [c for c in changed_files(ws, p.files) if c != rel]
        if others:
            return Outcome(False, f"changed files the task is not about: {', '.join(others)}")
        path = ws / rel
        got = settings(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else None
        if got is None:
            return Outcome(False, f"{rel} is missing or no longer valid Python")
        if got != expected:
            wrong = {k: got.get(k) for k in set(got) | set(expected) if got.get(k) != expected.get(k)}
            return Outcome(False, f"settings differ from what was asked: {wrong}")
        ok, out = run_main(ws)
        if not ok:
            return Outcome(False, f"main.py fails after the edit: {out[-300:]!r}")
        return Outcome(True, f"{const} = {new}")

    return AgentTask(f"edit-{i}", "edit", f"change `{const}` from {old} to {new}.", p.files,
                     (Step("Grep", {"pattern": f"{const} ="}),
                      Step("Edit", {"path": rel, "old_string": f"{const} = {old}", "new_string": f"{const} = {new}"}),
                      Step(None, text=f"set `{const}` to {new} in {rel}.")), check,
                     slots=dict(name=const, kind="constant", old=old, value=new))


def _script_request(rng: random.Random) -> tuple[str, str, str]:
    """(what the script should print, in words; the exact output; a correct script)."""
    kind = rng.choice(["sum", "factorial", "fibonacci", "reverse", "squares"])
    if kind == "sum":
        n = rng.randint(20, 500)
        return f"the sum of the integers from 1 to {n}", str(n * (n + 1) // 2), f"print(sum(range(1, {n + 1})))\n"
    if kind == "factorial":
        n = rng.randint(8, 20)
        fact = 1
        for k in range(2, n + 1):
            fact *= k
        return f"the factorial of {n}", str(fact), f"import math\n\nprint(math.factorial({n}))\n"
    if kind == "fibonacci":
        n = rng.randint(15, 60)
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return (f"the {n}th fibonacci number (counting fib(1) = fib(2) = 1)", str(a),
                f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, a + b\nprint(a)\n")
    if kind == "reverse":
        word = rng.choice(WORDS)
        return f"the word '{word}' spelled backwards", word[::-1], f"print({word!r}[::-1])\n"
    n = rng.randint(5, 12)
    squares = " ".join(str(k * k) for k in range(1, n + 1))
    return (f"the squares of 1 to {n} on one line, separated by spaces", squares,
            f"print(' '.join(str(k * k) for k in range(1, {n + 1})))\n")


def task_create(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    what, expected, script = _script_request(rng)
    name = f"{rng.choice(WORDS)}_{rng.choice(['report', 'check', 'demo', 'calc'])}.py"

    def check(ws, answer, calls):
        others = [c for c in changed_files(ws, p.files) if c != name]
        if others:
            return Outcome(False, f"changed files the task is not about: {', '.join(others)}")
        if not (ws / name).is_file():
            return Outcome(False, f"{name} was not created")
        r = run_python(f"import runpy\nrunpy.run_path({name!r}, run_name='__main__')\n", CHECK_LIMITS, ws)
        if not r.passed:
            return Outcome(False, f"{name} does not run: {r.output.strip()[-300:]!r}")
        if r.output.strip() != expected:
            return Outcome(False, f"{name} prints {r.output.strip()[:200]!r}, not {expected!r}")
        return Outcome(True, f"{name} prints {expected!r}")

    return AgentTask(f"create-{i}", "create", f"create a python script `{name}` that prints {what}.", p.files,
                     (Step("Edit", {"path": name, "old_string": "", "new_string": script}),
                      Step("Bash", {"command": f"python {name}"}),
                      Step(None, text=f"created {name}; it prints {expected}.")), check,
                     slots=dict(what=f"prints {what}", task=f"print {what}", file=name))


def task_run(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    total = p.output.split()[1]

    def check(ws, answer, calls):
        changed = changed_files(ws, p.files)
        if changed:
            return Outcome(False, f"running a command changed files: {', '.join(changed)}")
        if not any(name == "Bash" and ok and "main.py" in args.get("command", "") for name, args, ok in calls):
            return Outcome(False, "no Bash call ran main.py")
        if not has_number(answer, total):
            return Outcome(False, f"the answer does not report the printed total {total}")
        return Outcome(True, f"ran main.py and reported {total}")

    return AgentTask(f"run-{i}", "run", "run `python main.py` and tell me what it prints.", p.files,
                     (Step("Bash", {"command": "python main.py"}),
                      Step(None, text=f"it prints `{p.output}`.")), check,
                     slots=dict(cmd="python main.py", file="main.py"))


# --- the kinds of the newer synth families (issue 15): read, explore, count, usages, tests, fix, docstring,
# delete, chat, typo. Not in KINDS (the default suite, which the speedrun gate and RL use as is): ALL_KINDS.

def _reads(calls, rel: str, first: int, last: int) -> bool:
    for name, args, ok in calls:
        if not ok:
            continue
        if name == "Read" and args.get("path", "").removeprefix("./") == rel:
            off, limit = int(args.get("offset") or 1), args.get("limit")
            if off <= first and (limit is None or off + int(limit) - 1 >= last):
                return True
        if name == "Bash" and rel in args.get("command", "") and re.match(r"\s*(cat|head|sed|nl)\b", args["command"]):
            return True
    return False


def _unchanged(ws, files) -> Outcome | None:
    changed = [c for c in changed_files(ws, files) if not c.startswith(".pytest_cache/")]
    return Outcome(False, f"a question changed files: {', '.join(changed)}") if changed else None


def task_read(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    rel = rng.choice([f"{p.package}/util.py", f"{p.package}/core.py", "main.py"])
    n = rng.randint(4, 9)

    def check(ws, answer, calls):
        bad = _unchanged(ws, p.files)
        if bad:
            return bad
        if not _reads(calls, rel, 1, n):
            return Outcome(False, f"no call showed lines 1-{n} of {rel}")
        return Outcome(bool(answer.strip()), "read them" if answer.strip() else "no answer")

    return AgentTask(f"read-{i}", "read", f"show me the first {n} lines of {rel}", p.files,
                     (Step("Read", {"path": rel, "limit": str(n)}), Step(None, text=f"those are the first {n} lines.")),
                     check, slots=dict(file=rel, n=n))


def task_explore(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)

    def check(ws, answer, calls):
        bad = _unchanged(ws, p.files)
        if bad:
            return bad
        low = answer.lower()
        if p.package not in low or not ("total" in low or "main.py" in low):
            return Outcome(False, f"the answer does not say it is the {p.package} tool that prints a total")
        return Outcome(True, "summarised the project")

    return AgentTask(f"explore-{i}", "explore", "what does this project do?", p.files,
                     (Step("Bash", {"command": "find . -type f | sort"}), Step("Read", {"path": "README.md"}),
                      Step(None, text=f"it's the {p.package} tool: `python main.py` prints the {p.package} total.")),
                     check, slots=dict())


def task_count(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    rel = f"{p.package}/util.py"

    def check(ws, answer, calls):
        bad = _unchanged(ws, p.files)
        if bad:
            return bad
        return Outcome(has_number(answer, 3), "counted 3" if has_number(answer, 3) else "the answer does not say 3")

    return AgentTask(f"count-{i}", "count", f"how many functions are defined in {rel}?", p.files,
                     (Step("Grep", {"pattern": "^def ", "path": rel}), Step(None, text=f"3 functions in {rel}.")), check,
                     slots=dict(file=rel))


def task_usages(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    name = p.functions[rng.choice(["keep", "label", "scale"])]
    core = p.files[f"{p.package}/core.py"]
    lines = [k for k, line in enumerate(core.splitlines(), 1) if re.search(rf"\b{name}\b", line)]

    def check(ws, answer, calls):
        bad = _unchanged(ws, p.files)
        if bad:
            return bad
        missing = [k for k in lines if not has_number(answer, k)]
        if "core.py" not in answer or missing:
            return Outcome(False, f"the answer does not name core.py lines {lines}")
        return Outcome(True, f"named core.py lines {lines}")

    where = ", ".join(f"{p.package}/core.py:{k}" for k in lines)
    return AgentTask(f"usages-{i}", "usages", f"where is {name} used?", p.files,
                     (Step("Grep", {"pattern": rf"\b{name}\b"}), Step(None, text=f"it's used at {where}.")), check,
                     slots=dict(name=name, kind="function"))


def _with_tests(p: Project, bug: bool) -> dict[str, str]:
    """The project plus unittest tests of its helpers; with bug, keep() drops the values equal to the limit."""
    scale, keep = p.functions["scale"], p.functions["keep"]
    s = p.constants["SCALE_FACTOR"]
    test = (f"import unittest\n\nfrom {p.package}.util import {keep}, {scale}\n\n\n"
            f"class TestUtil(unittest.TestCase):\n"
            f"    def test_scale(self):\n        self.assertEqual({scale}([1, 2]), [{s}, {2 * s}])\n\n"
            f"    def test_keep(self):\n        self.assertEqual({keep}([1, 5, 9], 5), [1, 5])\n\n"
            f"    def test_keep_none(self):\n        self.assertEqual({keep}([7], 3), [])\n")
    files = {**p.files, "tests/__init__.py": "", "tests/test_util.py": test}
    if bug:
        util = files[f"{p.package}/util.py"]
        files[f"{p.package}/util.py"] = util.replace("if v <= limit]", "if v < limit]")
    return files


RUN_TESTS = "import sys, unittest\nsys.path.insert(0, '.')\nunittest.main(module=None, argv=['t', 'discover', '-s', 'tests', '-t', '.'])\n"


def task_test(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    files = _with_tests(p, bug=False)

    def check(ws, answer, calls):
        bad = _unchanged(ws, files)
        if bad:
            return bad
        if not any(n == "Bash" and re.search(r"unittest|pytest|make", a.get("command", "")) for n, a, _ in calls):
            return Outcome(False, "no Bash call ran the tests")
        return Outcome(has_number(answer, 3), "reported 3 passing" if has_number(answer, 3) else "the answer does not say 3 tests")

    return AgentTask(f"test-{i}", "test", "run the tests", files,
                     (Step("Bash", {"command": "ls -F"}), Step("Bash", {"command": "python -m unittest"}),
                      Step(None, text="all 3 tests pass.")), check, slots=dict())


def task_fix(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    files = _with_tests(p, bug=True)
    rel = f"{p.package}/util.py"

    def check(ws, answer, calls):
        others = [c for c in changed_files(ws, files) if c != rel and not c.startswith(".pytest_cache/")]
        if others:
            return Outcome(False, f"changed files the task is not about: {', '.join(others)}")
        r = run_python(RUN_TESTS, CHECK_LIMITS, ws)
        return Outcome(r.passed, "the tests pass" if r.passed else f"the tests still fail: {r.output[-300:]!r}")

    return AgentTask(f"fix-{i}", "fix", "the tests are failing. can you fix the bug?", files,
                     (Step("Bash", {"command": "python -m unittest"}), Step("Read", {"path": rel}),
                      Step("Edit", {"path": rel, "old_string": "if v < limit]", "new_string": "if v <= limit]"}),
                      Step("Bash", {"command": "python -m unittest"}), Step(None, text="fixed, the tests pass.")), check,
                     slots=dict())


def task_docstring(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    name = p.functions["label"]
    rel = f"{p.package}/util.py"
    doc = '    """A short label: the first three letters of the package, then the name."""\n'
    files = {**p.files, rel: p.files[rel].replace(doc, "")}

    def check(ws, answer, calls):
        others = [c for c in changed_files(ws, files) if c != rel]
        if others:
            return Outcome(False, f"changed files the task is not about: {', '.join(others)}")
        try:
            tree = ast.parse((ws / rel).read_text(encoding="utf-8"))
        except SyntaxError:
            return Outcome(False, f"{rel} no longer parses")
        fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
        if fn is None or not ast.get_docstring(fn):
            return Outcome(False, f"{name} has no docstring")
        fn.body = fn.body[1:]
        if ast.dump(tree) != ast.dump(ast.parse(files[rel])):
            return Outcome(False, f"{rel} changed beyond the docstring")
        return Outcome(True, f"{name} has a docstring")

    line = f"def {name}(name):\n"
    return AgentTask(f"docstring-{i}", "docstring", f"add a docstring to {name}", files,
                     (Step("Grep", {"pattern": f"def {name}\\b"}),
                      Step("Edit", {"path": rel, "old_string": line, "new_string": line + doc}),
                      Step(None, text=f"added a docstring to {name}.")), check, slots=dict(name=name, kind="function"))


def task_delete(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    rel = f"{p.package}/util.py"
    dead = f"legacy_{rng.choice(WORDS)}"
    block = f"\n\ndef {dead}(values):\n    \"\"\"Unused since the rewrite.\"\"\"\n    return sorted(values)\n"
    files = {**p.files, rel: p.files[rel] + block}

    def check(ws, answer, calls):
        others = [c for c in changed_files(ws, files) if c != rel]
        if others:
            return Outcome(False, f"changed files the task is not about: {', '.join(others)}")
        text = (ws / rel).read_text(encoding="utf-8")
        if re.search(rf"\b{dead}\b", text):
            return Outcome(False, f"{dead} is still in {rel}")
        ok, out = run_main(ws)
        if not ok or out != p.output:
            return Outcome(False, f"main.py no longer prints {p.output!r}: {out[-200:]!r}")
        return Outcome(True, f"deleted {dead}, main.py still works")

    return AgentTask(f"delete-{i}", "delete", f"delete the function {dead}, nothing uses it", files,
                     (Step("Grep", {"pattern": rf"\b{dead}\b"}),
                      Step("Edit", {"path": rel, "old_string": block, "new_string": ""}),
                      Step(None, text=f"deleted {dead}.")), check, slots=dict(name=dead, kind="function"))


def task_chat(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    prompt = rng.choice(["what can you do?", "hi! what can you help me with?", "what are you able to do here?"])

    def check(ws, answer, calls):
        if calls:
            return Outcome(False, f"made {len(calls)} tool call(s) for a question that needs none")
        low = answer.lower()
        said = [w for w in ("read", "search", "grep", "edit", "run", "bash") if w in low]
        return Outcome(len(said) >= 2, f"named {said}" if len(said) >= 2 else "the answer does not say what it can do")

    return AgentTask(f"chat-{i}", "chat", prompt, p.files,
                     (Step(None, text="i can read, search (Grep), edit and run things in this repo."),), check,
                     slots=dict())


def task_typo(i: int, rng: random.Random) -> AgentTask:
    p = make_project(rng)
    role = rng.choice(["scale", "keep", "label"])
    name = p.functions[role]
    typo = name[:-1]
    rel = f"{p.package}/util.py"
    line = line_of(p.files[rel], f"def {name}(")

    def check(ws, answer, calls):
        bad = _unchanged(ws, p.files)
        if bad:
            return bad
        if name not in answer or "util.py" not in answer or not has_number(answer, line):
            return Outcome(False, f"the answer does not point at {name} in {rel}, line {line}")
        return Outcome(True, f"found {name} for {typo}")

    return AgentTask(f"typo-{i}", "typo", f"where is {typo} defined?", p.files,
                     (Step("Grep", {"pattern": f"def {typo}\\b"}), Step("Grep", {"pattern": f"(?i)def \\w*{typo}"}),
                      Step(None, text=f"no {typo}, but {name} is at {rel}:{line}.")), check,
                     slots=dict(name=typo, kind="function"))


MAKERS = {"locate": task_locate, "answer": task_answer, "rename": task_rename, "edit": task_edit,
          "create": task_create, "run": task_run,
          "read": task_read, "explore": task_explore, "count": task_count, "usages": task_usages, "test": task_test,
          "fix": task_fix, "docstring": task_docstring, "delete": task_delete, "chat": task_chat, "typo": task_typo}
NEW_KINDS = ("read", "explore", "count", "usages", "test", "fix", "docstring", "delete", "chat", "typo")
ALL_KINDS = KINDS + NEW_KINDS


def make_suite(per_kind: int = 3, seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[AgentTask]:
    """per_kind tasks of each kind, interleaved (locate-0, answer-0, ..., locate-1, ...), reproducible."""
    unknown = [k for k in kinds if k not in MAKERS]
    if unknown:
        raise ValueError(f"unknown task kind(s) {', '.join(unknown)}; the kinds are {', '.join(ALL_KINDS)}")
    if per_kind < 1:
        raise ValueError(f"per_kind must be at least 1, got {per_kind}")
    tasks = []
    for i in range(per_kind):
        for kind in kinds:
            # One generator per task: adding a kind or a task does not change the others.
            rng = random.Random(f"{seed}:{kind}:{i}")
            tasks.append(MAKERS[kind](i, rng))
    return tasks
