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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from training.eval.sandbox import Limits, run_python

KINDS = ("locate", "answer", "rename", "edit", "create", "run")

PACKAGES = ["inventory", "ledger", "weather", "garden", "orbit", "library", "recipes", "transit", "chess",
            "pantry", "harbor", "census", "studio", "atlas", "beacon", "canopy"]
VERBS = ["scale", "filter", "label", "merge", "clamp", "tally", "render", "expand", "gather", "shift",
         "pack", "split", "rank", "trim", "weigh", "blend"]
NOUNS = ["values", "items", "records", "entries", "readings", "parts", "orders", "samples", "tokens",
         "rows", "points", "scores"]
CONSTANTS = ["MAX_ITEMS", "SCALE_FACTOR", "RETRY_LIMIT", "BATCH_SIZE", "TIMEOUT_SECONDS", "MIN_SCORE",
             "PAGE_SIZE", "CACHE_SLOTS"]
WORDS = ["lantern", "meadow", "quartz", "harvest", "pebble", "cobalt", "thimble", "juniper"]

# The checks run the workspace's programs in the sandbox too: the model under test may have written them.
CHECK_LIMITS = Limits(timeout_s=10.0, cpu_s=10, memory_mb=1024, output_kb=64)
RUN_MAIN = "import runpy, sys\nsys.path.insert(0, '.')\nrunpy.run_path('main.py', run_name='__main__')\n"


@dataclass(frozen=True)
class Step:
    """One step of a scripted solution: a tool call (tool, args) or, with tool None, the final answer."""
    tool: str | None
    args: dict[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class Outcome:
    success: bool
    detail: str  # why it failed, or what was checked


# check(workspace, answer, calls): calls are the tool calls that ran, as (name, args, ok) triples.
Check = Callable[[Path, str, list[tuple[str, dict, bool]]], Outcome]


@dataclass(frozen=True)
class AgentTask:
    id: str
    kind: str
    prompt: str
    files: dict[str, str]
    solution: tuple[Step, ...]
    check: Check

    def materialise(self, workspace: Path) -> None:
        write_files(workspace, self.files)


def write_files(workspace: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# --- the project every task works on --------------------------------------------------------------

@dataclass(frozen=True)
class Project:
    package: str
    functions: dict[str, str]        # role -> name: scale, keep, label, total
    constants: dict[str, int]        # name -> value, all in config.py
    numbers: list[int]
    files: dict[str, str]

    @property
    def output(self) -> str:
        """What `python main.py` prints, computed the way the code computes it."""
        scale, limit = self.constants[CONSTANTS_USED[0]], self.constants[CONSTANTS_USED[1]]
        kept = [v * scale for v in self.numbers if v * scale <= limit]
        return f"{self.package[:3]}-total {sum(kept)} {len(kept)}"


# Which generated constants the code reads (the rest are settings nobody uses, as in real configs).
CONSTANTS_USED = ("SCALE_FACTOR", "MAX_ITEMS")


def make_project(rng: random.Random) -> Project:
    package = rng.choice(PACKAGES)
    verbs = rng.sample(VERBS, 4)
    nouns = rng.sample(NOUNS, 4)
    fn = {role: f"{v}_{n}" for role, v, n in zip(("scale", "keep", "label", "total"), verbs, nouns)}
    extra = [c for c in rng.sample(CONSTANTS, 4) if c not in CONSTANTS_USED][:2]
    constants = {"SCALE_FACTOR": rng.randint(2, 9), "MAX_ITEMS": rng.randint(40, 400)}
    constants.update({c: rng.randint(3, 250) for c in extra})
    numbers = [rng.randint(1, 60) for _ in range(rng.randint(6, 10))]
    config = f'"""Settings for the {package} tool."""\n\n' + "".join(
        f"{name} = {value}\n" for name, value in constants.items())
    util = f'''"""Small helpers for {package}."""
from {package}.config import SCALE_FACTOR


def {fn["scale"]}(values):
    """Every value times the scale factor."""
    return [v * SCALE_FACTOR for v in values]


def {fn["keep"]}(values, limit):
    """The values at or below the limit, in order."""
    return [v for v in values if v <= limit]


def {fn["label"]}(name):
    """A short label: the first three letters of the package, then the name."""
    return "{package[:3]}-" + name.lower()
'''
    core = f'''"""The {package} pipeline."""
from {package}.config import MAX_ITEMS
from {package}.util import {fn["keep"]}, {fn["label"]}, {fn["scale"]}


def {fn["total"]}(values):
    """Scales the values, drops those above MAX_ITEMS, and returns (label, sum, count)."""
    kept = {fn["keep"]}({fn["scale"]}(values), MAX_ITEMS)
    return {fn["label"]}("TOTAL"), sum(kept), len(kept)
'''
    main = f'''from {package}.core import {fn["total"]}

NUMBERS = {numbers}

if __name__ == "__main__":
    label, total, count = {fn["total"]}(NUMBERS)
    print(label, total, count)
'''
    files = {f"{package}/__init__.py": "", f"{package}/config.py": config, f"{package}/util.py": util,
             f"{package}/core.py": core, "main.py": main,
             "README.md": f"# {package}\n\nRun `python main.py` to print the {package} total.\n"}
    return Project(package, fn, constants, numbers, files)


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise ValueError(f"{needle!r} not in the text")


# --- workspace checks ------------------------------------------------------------------------------

def snapshot(workspace: Path) -> dict[str, str]:
    """Every file under the workspace (relative path -> text), ignoring caches the tools may leave."""
    out = {}
    for path in sorted(workspace.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            out[path.relative_to(workspace).as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    return out


def changed_files(workspace: Path, original: dict[str, str]) -> list[str]:
    now = snapshot(workspace)
    return sorted(p for p in set(now) | set(original) if now.get(p) != original.get(p))


def has_number(text: str, value: int | str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w]|\.\d)", text) is not None


def run_main(workspace: Path) -> tuple[bool, str]:
    r = run_python(RUN_MAIN, CHECK_LIMITS, workspace)
    return r.passed, r.output.strip()


def settings(text: str) -> dict[str, object] | None:
    """Top-level NAME = literal assignments of a config file; None when it no longer parses."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = ast.unparse(node.value)
    return out


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
                      Step(None, text=f"it's defined in {rel}, line {line}.")), check)


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
                      Step(None, text=f"`{const}` is {value}, set in {rel}.")), check)


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
                     "project.", p.files, tuple(steps), check)


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
                      Step(None, text=f"set `{const}` to {new} in {rel}.")), check)


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
                      Step(None, text=f"created {name}; it prints {expected}.")), check)


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
                      Step(None, text=f"it prints `{p.output}`.")), check)


MAKERS = {"locate": task_locate, "answer": task_answer, "rename": task_rename, "edit": task_edit,
          "create": task_create, "run": task_run}


def make_suite(per_kind: int = 3, seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[AgentTask]:
    """per_kind tasks of each kind, interleaved (locate-0, answer-0, ..., locate-1, ...), reproducible."""
    unknown = [k for k in kinds if k not in MAKERS]
    if unknown:
        raise ValueError(f"unknown task kind(s) {', '.join(unknown)}; the kinds are {', '.join(KINDS)}")
    if per_kind < 1:
        raise ValueError(f"per_kind must be at least 1, got {per_kind}")
    tasks = []
    for i in range(per_kind):
        for kind in kinds:
            # One generator per task: adding a kind or a task does not change the others.
            rng = random.Random(f"{seed}:{kind}:{i}")
            tasks.append(MAKERS[kind](i, rng))
    return tasks
