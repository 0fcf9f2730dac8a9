"""Checkers for synthetic tasks: did the request get done, judged by the workspace a turn leaves, its calls
and its final answer (the same contract as training/eval/agent_tasks.py's checks).

    check(workspace, answer, calls) -> Outcome      calls: (tool, args, ok) of every call that ran

Built from small parts with `all_of`, so each family states its success condition in a line or two.
"""
import ast
import re
from pathlib import Path

from training.eval.agent_tasks import CHECK_LIMITS, Outcome, has_number
from training.eval.sandbox import run_python

CACHES = ("__pycache__", ".pytest_cache")


def snapshot(ws: Path) -> dict[str, str]:
    out = {}
    for path in sorted(Path(ws).rglob("*")):
        if path.is_file() and not any(c in path.parts for c in CACHES):
            out[path.relative_to(ws).as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    return out


def all_of(*checks):
    def check(ws, answer, calls):
        details = []
        for c in checks:
            o = c(ws, answer, calls)
            if not o.success:
                return o
            details.append(o.detail)
        return Outcome(True, "; ".join(d for d in details if d))
    return check


def nothing_changed(files: dict[str, str]):
    return only_changed(files, ())


def only_changed(files: dict[str, str], allowed):
    files, allowed = dict(files), set(allowed)

    def check(ws, answer, calls):
        now = snapshot(ws)
        changed = sorted(p for p in set(now) | set(files) if now.get(p) != files.get(p) and p not in allowed)
        if changed:
            return Outcome(False, f"changed files the task is not about: {', '.join(changed)}")
        return Outcome(True, "")
    return check


def answer_has(*needles: str, numbers: tuple = ()):
    """Every needle (case-insensitive) and every number (as a whole number) is in the answer."""
    def check(ws, answer, calls):
        low = answer.lower()
        for n in needles:
            if n.lower() not in low:
                return Outcome(False, f"the answer does not mention {n!r}")
        for v in numbers:
            if not has_number(answer, v):
                return Outcome(False, f"the answer does not give {v}")
        return Outcome(True, f"answer has {', '.join(map(str, needles + tuple(numbers)))}")
    return check


def answer_given():
    def check(ws, answer, calls):
        return Outcome(bool(answer.strip()), "answered" if answer.strip() else "no answer")
    return check


def no_calls():
    def check(ws, answer, calls):
        if calls:
            return Outcome(False, f"made {len(calls)} tool call(s) for a request that needs none")
        return Outcome(True, "no tool calls")
    return check


def called(pred, what: str, must_succeed: bool = True):
    """Some call (a successful one, unless must_succeed is False) satisfies pred(tool, args)."""
    def check(ws, answer, calls):
        if any((ok or not must_succeed) and pred(name, args) for name, args, ok in calls):
            return Outcome(True, what)
        return Outcome(False, f"no {'successful ' * must_succeed}call {what}")
    return check


def same_path(a: str, b: str) -> bool:
    return a.strip().removeprefix("./") == b.strip().removeprefix("./")


def read_covers(rel: str, first: int, last: int | None):
    """A Read of rel shows lines first..last (last None: to the end), or a Bash cat/head/sed of it does."""
    def pred(name, args):
        if name == "Read" and same_path(args.get("path", ""), rel):
            off = int(args.get("offset", "1") or 1)
            limit = args.get("limit")
            return off <= first and (limit is None or (last is not None and off + int(limit) - 1 >= last))
        cmd = args.get("command", "") if name == "Bash" else ""
        return rel in cmd and bool(re.match(r"\s*(cat|head|sed|nl|less|more)\b", cmd))
    return called(pred, f"read {rel} lines {first}-{last or 'end'}")


def ran(pattern: str, what: str, must_succeed: bool = True):
    return called(lambda name, args: name == "Bash" and re.search(pattern, args.get("command", "")) is not None,
                  what, must_succeed)


def prints(rel: str, expected: str):
    """Running rel (with the workspace on sys.path) prints exactly `expected`."""
    def check(ws, answer, calls):
        if not (Path(ws) / rel).is_file():
            return Outcome(False, f"{rel} does not exist")
        r = run_python(f"import runpy, sys\nsys.path.insert(0, '.')\nrunpy.run_path({rel!r}, run_name='__main__')\n",
                       CHECK_LIMITS, ws)
        if not r.passed:
            return Outcome(False, f"{rel} does not run: {r.output.strip()[-300:]!r}")
        if r.output.strip() != expected.strip():
            return Outcome(False, f"{rel} prints {r.output.strip()[:200]!r}, not {expected.strip()[:200]!r}")
        return Outcome(True, f"{rel} prints what was asked")
    return check


def file_is(rel: str, text: str):
    def check(ws, answer, calls):
        path = Path(ws) / rel
        got = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
        if got != text:
            return Outcome(False, f"{rel} is not as expected" if got is not None else f"{rel} is missing")
        return Outcome(True, f"{rel} as expected")
    return check


# Runs test files without pytest (which needs a temporary directory the sandbox does not give it): every
# `test_*` function, and every unittest.TestCase, of each file.
_RUN_TESTS = """
import inspect, runpy, sys, unittest
sys.path.insert(0, '.')
failed = 0
for path in PATHS:
    ns = runpy.run_path(path, run_name='tests')
    for name, obj in sorted(ns.items()):
        if inspect.isclass(obj) and issubclass(obj, unittest.TestCase):
            result = unittest.TextTestRunner(verbosity=0).run(unittest.defaultTestLoader.loadTestsFromTestCase(obj))
            failed += len(result.failures) + len(result.errors)
        elif name.startswith('test') and inspect.isfunction(obj):
            try:
                obj()
            except Exception as e:
                failed += 1
                print('FAILED', path, name, repr(e))
sys.exit(1 if failed else 0)
"""


def tests_pass(paths: list[str]):
    """The test files at `paths` pass (run in the sandbox, with the workspace on sys.path)."""
    def check(ws, answer, calls):
        r = run_python(f"PATHS = {list(paths)!r}\n" + _RUN_TESTS, CHECK_LIMITS, ws)
        if not r.passed:
            return Outcome(False, f"the tests fail: {r.output.strip()[-300:]!r}")
        return Outcome(True, "the tests pass")
    return check


def module_without(text: str, name: str, docstring_of: str | None = None) -> str | None:
    """ast.dump of a module with function `name` removed (or, with docstring_of, that function's
    docstring removed): comparing these says a delete or a docstring changed nothing else."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None

    def strip(body):
        out = []
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name and not docstring_of:
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == docstring_of \
                    and ast.get_docstring(node) is not None:
                node.body = node.body[1:] or [ast.Pass()]
            if isinstance(node, ast.ClassDef):
                node.body = strip(node.body)
            out.append(node)
        return out

    tree.body = strip(tree.body)
    return ast.dump(tree)


def defines(text: str, name: str) -> bool:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name
               for n in ast.walk(tree))
