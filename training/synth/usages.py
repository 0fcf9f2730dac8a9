"""Find usages of a name (Grep `\\bname\\b` over the workspace, then every place but the definition) and
find TODO/FIXME comments (planted into real code at real lines, or none at all: then the answer says so)."""
import random
import re

from training.synth import checks
from training.synth.episode import Episode, Skip
from training.synth.tasks import GREP_HIT, Task, ask, code, pick_file, project

NAME = "usages"
TODO_TEXTS = ["handle empty input", "this is slow for big files", "remove after the migration", "add a test for this",
              "check the return value", "log something useful here", "support windows paths", "make this configurable",
              "validate the arguments", "what if this is None?", "cache this", "split this function up"]
TODO_MARKS = ["TODO", "TODO", "FIXME", "TODO(sam)", "TODO(alex)"]


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_usages, make_usages, make_todos])(files, rng)


def sites(hits: list[tuple[str, int]]) -> str:
    shown = [f"`{p}:{n}`" for p, n in hits]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def make_usages(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    if f is None:
        return None
    names = [g for g in f.info.functions if not g.name.startswith("__") and len(g.name) >= 4]
    if not names:
        return None
    fn = rng.choice(names)
    spec, rel = project(f, files, rng), f.rel
    kind = "method" if fn.cls else "function"
    tags = {"variant": "usages"}
    request = ask("find_usages", rng, tags, name=fn.name, kind=kind, cls=fn.cls)
    pattern = rf"\b{fn.name}\b"
    expected = [(p, i) for p, t in spec.files.items() for i, line in enumerate(t.splitlines(), 1)
                if re.search(pattern, line)]
    uses = [(p, i) for p, i in expected if (p, i) != (rel, fn.lineno)]
    if len(expected) > 9 or (rel, fn.lineno) not in expected:
        return None

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me grep for every mention of `{n}`", "searching for `{n}` as a whole word",
                        "grepping the whole project for `{n}`"], n=fn.name))
        out = ep.call("Grep", pattern=pattern).output
        hits = [(p, int(n)) for p, n in GREP_HIT.findall(out)]
        if sorted(hits) != sorted(expected):
            raise Skip("grep found something else")
        where = f"it's defined at `{rel}:{fn.lineno}`"
        if not uses:
            ep.say(ep.rng.choice([f"nothing uses it: the only match is its definition, `{rel}:{fn.lineno}`.",
                                  f"no callers at all, just the definition at `{rel}:{fn.lineno}`."]))
        elif len(uses) == 1:
            ep.say(f"one use, at {sites(uses)}. {where}.")
        else:
            ep.say(ep.rng.choice([f"{len(uses)} uses: {sites(uses)}. {where}.",
                                  f"{code(fn.name)} shows up in {len(uses)} places besides its definition: {sites(uses)}."]))
        ep.end()

    def names_every_use(ws, answer, calls):
        missing = [f"{p}:{n}" for p, n in uses if p.split("/")[-1] not in answer or not checks.has_number(answer, n)]
        if missing:
            return checks.Outcome(False, f"the answer leaves out {', '.join(missing)}")
        if not uses and not (re.search(r"\b(no|not|nothing|only|none|unused)\b", answer.lower())
                             and checks.has_number(answer, fn.lineno)):
            return checks.Outcome(False, "the answer does not say that only the definition mentions it")
        return checks.Outcome(True, f"named {len(uses)} uses")

    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags,
                check=checks.all_of(checks.nothing_changed(spec.files), names_every_use))


def plant_todo(spec, rel: str, rng: random.Random) -> str | None:
    """Insert a `# TODO: ...` comment above a random indented line of rel; returns its text or None."""
    text = spec.files[rel]
    lines = text.splitlines()
    options = [x for x in lines if re.match(r"^\s{4,}\w", x) and text.count(x) == 1 and not x.rstrip().endswith("\\")]
    if not options:
        return None
    line = rng.choice(options)
    indent = re.match(r"\s*", line).group(0)
    comment = f"# {rng.choice(TODO_MARKS)}: {rng.choice(TODO_TEXTS)}"
    if comment in text:
        return None
    spec.plant(rel, line, f"{indent}{comment}\n{line}")
    return comment


def make_todos(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    if f is None:
        return None
    spec = project(f, files, rng, extra=rng.randint(0, 2))
    pattern = rng.choice(["TODO|FIXME", "TODO|FIXME", "TODO", "(TODO|FIXME)"])
    if any(re.search(pattern, t) for t in spec.files.values()):
        return None  # real TODOs of the corpus would make the list long and the answer unchecked
    planted = 0 if rng.random() < 0.15 else rng.randint(1, 3)
    for _ in range(planted):
        plant_todo(spec, rng.choice(list(spec.files)), rng)
    one = f.rel if rng.random() < 0.4 else None  # "any TODOs in FILE?": search that file only
    tags = {}
    request = ask("find_todos", rng, tags, mention=("file",) if one else (), file=one)
    one = one if one and one in request else None
    expected = [(p, i, line.strip()) for p, t in spec.files.items() for i, line in enumerate(t.splitlines(), 1)
                if re.search(pattern, line) and p == (one or p)]
    tags["variant"] = f"todos_{min(len(expected), 2)}" + ("_file" if one else "")

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["grepping for TODO and FIXME", "let me search for them", "one Grep for the markers"]))
        out = ep.call("Grep", pattern=pattern, **({"path": one} if one else {})).output
        hits = [(p, int(n)) for p, n in GREP_HIT.findall(out)]
        if sorted(hits) != sorted((p, i) for p, i, _ in expected):
            raise Skip("grep found something else")
        if not expected:
            ep.say(ep.rng.choice(["i couldn't find any TODO or FIXME comments, the code is clean on that front.",
                                  "nothing: no TODO or FIXME markers in here."]))
        else:
            items = [f"`{p}:{i}` ({t.lstrip('#').strip()})" for p, i, t in expected]
            listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
            ep.say(f"{len(items)} of them: {listed}." if len(items) > 1 else f"just one: {listed}.")
        ep.end()

    def lists_them(ws, answer, calls):
        missing = [f"{p}:{i}" for p, i, _ in expected if not checks.has_number(answer, i)]
        if missing:
            return checks.Outcome(False, f"the answer leaves out {', '.join(missing)}")
        if not expected and not re.search(r"\b(no|none|nothing|zero)\b", answer.lower()):
            return checks.Outcome(False, "the answer does not say there are none")
        return checks.Outcome(True, f"listed {len(expected)} TODOs")

    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags,
                check=checks.all_of(checks.nothing_changed(spec.files), lists_them))
