"""What the agent tasks are made of (training/eval/agent_tasks.py): the task and its scripted solution, the
made-up project every task works on, and the workspace checks the checkers share."""
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
    # what the prompt is about (name, file, values), for rephrasing it (training/eval/phrasing_split.py)
    slots: dict = field(default_factory=dict, compare=False, hash=False)
    pattern: str = ""  # the phrasing pattern of a rephrased prompt ("" for the fixed prompts here)

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
        if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts:
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
