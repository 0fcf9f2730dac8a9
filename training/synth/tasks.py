"""What every task family shares: the Task record, choosing source files and targets, and the small
script steps several families use (grep for a definition, read a function, answer with a location)."""
import random
import re
from dataclasses import dataclass, field
from typing import Callable

from training.synth import phrasing, voice
from training.synth.episode import Episode, Skip
from training.synth.sources import Function, SourceFile, WorkspaceSpec, module_file_name


@dataclass
class Task:
    family: str
    spec: WorkspaceSpec
    script: Callable[[Episode], None]
    key: str                                   # the main source file (for stats)
    turns: int = 1                             # assistant turns; a fault goes into the last
    allowed_paths: list[str] | None = None     # files the task may edit (for the critic's no_extra_work)
    faults: tuple[str, ...] = ()               # family-specific faults the script knows how to make
    tags: dict = field(default_factory=dict)   # what varied (phrasing pattern, variant) for stats
    # check(workspace, final answer, calls as (tool, args, ok)) -> Outcome: did the task get done? The
    # scripted teacher must pass it through the real agent loop (tests/test_synth_families.py), and the
    # generalisation eval scores a model with it (training/eval/phrasing_split.py).
    check: Callable | None = None


def pick_file(files: list[SourceFile], rng: random.Random, want: Callable[[SourceFile], bool],
              tries: int = 12) -> SourceFile | None:
    for _ in range(tries):
        f = rng.choice(files)
        if f.info is not None and want(f):
            return f
    return None


def pick_function(f: SourceFile, rng: random.Random, want: Callable[[Function], bool]) -> Function | None:
    """A function of f that `want` accepts and whose name is defined once in the file (so 'the' function
    named X is unambiguous within its file)."""
    names = [g.name for g in f.info.functions]
    options = [g for g in f.info.functions if names.count(g.name) == 1 and not g.name.startswith("__")
               and want(g)]
    return rng.choice(options) if options else None


def project(target: SourceFile, files: list[SourceFile], rng: random.Random, extra: int = 2) -> WorkspaceSpec:
    """The target file plus up to `extra` other files, each at its own path."""
    spec = WorkspaceSpec()
    spec.add(target)
    for _ in range(extra):
        other = rng.choice(files)
        if other.rel not in spec.files and other.key != target.key:
            spec.add(other)
    return spec


def small_project(files: list[SourceFile], rng: random.Random, extra: int = 1) -> WorkspaceSpec:
    """Only unrelated files, for tasks that write their own module into the workspace."""
    spec = WorkspaceSpec()
    for _ in range(extra):
        other = rng.choice(files)
        if other.rel not in spec.files:
            spec.add(other)
    return spec


def sig(f: Function, info) -> str:
    """The one-line signature, as written: `def name(a, b=2)` (None-safe for multi-line defs)."""
    text = " ".join(info.segment(f.lineno, f.def_end).split())
    text = re.sub(r"^async\s+", "", text).rstrip(":")
    return text.removeprefix("def ").split(" -> ")[0]


def code(s: str) -> str:
    return f"`{s}`"


def ask(intent: str, rng: random.Random, tags: dict, require: str | None = None, mention: tuple[str, ...] = (),
        **slots) -> str:
    """A request for `intent` (phrasing.ask); its pattern id goes into tags (the first request's is the
    conversation's `pattern`, every one is in `patterns`). With `require`, the request must contain that
    text (a file the teacher opens without searching for it must have been named by the user)."""
    for _ in range(8):
        try:
            req = phrasing.ask(intent, rng, mention=mention, **slots)
        except phrasing.NoOption as e:
            raise Skip(str(e)) from None
        if require is None or require in req.text:
            break
    else:
        raise Skip(f"no {intent} request naming {require}")
    tags.setdefault("pattern", req.pattern)
    tags.setdefault("patterns", []).append(req.pattern)
    return req.text


# -- shared steps --------------------------------------------------------------------------------------

GREP_HIT = re.compile(r"^(.+?):(\d+):", re.MULTILINE)


def grep_definition(ep: Episode, name: str, kind: str = "def") -> list[tuple[str, int]]:
    """Grep for `def name` (or `class name`) across the workspace; returns the (path, line) hits."""
    ep.say(ep.pick(voice.GREP_NOTES, name=name))
    res = ep.call("Grep", pattern=rf"{kind} {name}\b")
    return [(p, int(n)) for p, n in GREP_HIT.findall(res.output)]


def read_lines(ep: Episode, path: str, start: int, count: int, note: bool = True) -> str:
    if note:
        ep.say(ep.pick(voice.READ_NOTES, path=path, line=start))
    return ep.call("Read", path=path, offset=str(start), limit=str(count)).output


def expect_hit(hits: list[tuple[str, int]], path: str, line: int) -> None:
    if (path, line) not in hits:
        raise Skip(f"grep did not find {path}:{line} (got {hits[:3]})")


def grep_unique_definition(ep: Episode, name: str, path: str, line: int) -> None:
    """Grep for `def name` and expect exactly the one definition at path:line (else this task is skipped)."""
    hits = grep_definition(ep, name)
    expect_hit(hits, path, line)
    if len(hits) != 1:
        raise Skip(f"{name} is defined in more than one place")


def grep_in_file(ep: Episode, name: str, path: str, line: int) -> None:
    """The user named the file, not the line: Grep that file for `def name` (a line number nobody has shown
    is one the model would have to make up)."""
    ep.say(ep.pick(["finding `{n}` in `{p}`", "let me find the `def` in `{p}`", "grepping `{p}` for it"], n=name, p=path))
    res = ep.call("Grep", pattern=rf"def {name}\b", path=path)
    expect_hit([(p, int(n)) for p, n in GREP_HIT.findall(res.output)], path, line)


def doc_sentence(f: Function) -> str:
    """'it returns the sum' from the docstring, or ''."""
    return voice.describe(f.doc)


def facts(f: Function, rng: random.Random, limit: int = 2) -> list[str]:
    """Short statements about a function that its code shows: parameters, returns, raises, calls."""
    out = []
    params = [p.name for p in f.params if p.name not in ("self", "cls")]
    if params and len(params) <= 4:
        out.append("it takes " + ", ".join(code(p) for p in params[:-1])
                   + (" and " if len(params) > 1 else "") + code(params[-1]))
    if 1 <= len(set(f.returns)) <= 2:
        out.append("it returns " + " or ".join(code(r) for r in dict.fromkeys(f.returns)))
    if f.raises:
        out.append("it can raise " + " or ".join(code(r) for r in f.raises[:2]))
    called = [c for c in f.calls if len(c) > 2 and c not in f.raises and c not in ("len", "isinstance", "str", "int", "list", "dict", "super",
                                              "range", "set", "tuple", "print", "type", "getattr")]
    if called:
        out.append("it calls " + " and ".join(code(c) for c in called[:2]))
    if f.has_yield:
        out.append("it's a generator")
    rng.shuffle(out)
    return out[:limit]


def with_module(spec: WorkspaceSpec, stem: str, body: str) -> str:
    """Write `body` as a new module file (name safe from stdlib shadowing); returns its path."""
    rel = module_file_name(stem)
    spec.plant(rel, "", body)
    return rel
