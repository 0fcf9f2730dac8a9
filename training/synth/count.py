"""Counting: lines of a file (`wc -l`), lines of all the Python, functions or classes in a file (a Grep
that lists them, or `grep -c` when the list would be long), Python files (`find | wc -l`). The answer is
the number the tool printed, never an estimate."""
import ast
import random
import re

from training.synth import checks
from training.synth.episode import Episode, Skip
from training.synth.tasks import Task, ask, pick_file, project, small_project

NAME = "count"
DEF_RE = r"^\s*(async\s+)?def "
CLASS_RE = r"^\s*class "


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_lines, make_lines, make_total, make_defs, make_defs, make_classes, make_files])(files, rng)


def _no_change(spec):
    return checks.nothing_changed(spec.files)


def make_lines(files, rng: random.Random) -> Task | None:
    f = rng.choice(files)
    spec = small_project(files, rng, extra=1)
    if f.rel in spec.files:
        return None
    rel = spec.add(f)
    n = f.text.count("\n")
    tags = {"variant": "lines"}
    request = ask("count_lines", rng, tags, file=rel)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me count", "`wc -l` will tell us", "counting", "one `wc -l`"]))
        out = ep.call("Bash", command=f"wc -l {rel}").output
        if not out.strip().startswith(f"{n} "):
            raise Skip("unexpected wc output")
        ep.say(ep.rng.choice([f"`{rel}` has {n} lines.", f"{n} lines.", f"{n} lines in `{rel}`."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags,
                check=checks.all_of(_no_change(spec), checks.answer_has(numbers=(n,))))


def make_total(files, rng: random.Random) -> Task | None:
    spec = small_project(files, rng, extra=rng.randint(2, 4))
    py = [p for p in spec.files if p.endswith(".py")]
    if len(py) < 2:
        return None
    total = sum(spec.files[p].count("\n") for p in py)
    tags = {"variant": "total"}
    request = ask("count_lines_total", rng, tags)
    cmd = rng.choice(["find . -name '*.py' | xargs wc -l", "wc -l $(find . -name '*.py')"])

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["`wc -l` over every python file", "let me add them up with `wc`", "counting them all"]))
        out = ep.call("Bash", command=cmd).output
        m = re.search(r"^\s*(\d+) total$", out, re.M)
        if m is None or int(m.group(1)) != total:
            raise Skip("unexpected wc total")
        ep.say(ep.rng.choice([f"{total} lines of python across {len(py)} files.",
                              f"{total} in total, over {len(py)} `.py` files."]))
        ep.end()

    return Task(NAME, spec, script, next(iter(spec.sources.values())), allowed_paths=[], tags=tags,
                check=checks.all_of(_no_change(spec), checks.answer_has(numbers=(total,))))


def _counts(text: str, node_types) -> tuple[int, int] | None:
    """(all, top-level) definitions of the given ast node types; None when the file does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    every = sum(isinstance(n, node_types) for n in ast.walk(tree))
    top = sum(isinstance(n, node_types) for n in tree.body)
    return every, top


def _count_task(files, rng, variant: str, intent: str, node_types, pattern: str, noun: str) -> Task | None:
    f = pick_file(files, rng, lambda f: True)
    if f is None:
        return None
    counted = _counts(f.text, node_types)
    lines = [x for x in f.text.splitlines() if re.match(pattern, x)]
    if counted is None or counted[0] != len(lines) or not 1 <= counted[0] <= 60:
        return None  # a def inside a string, or none at all: the line count would not be the answer
    every, top = counted
    spec, rel = project(f, files, rng, extra=1), f.rel
    tags = {"variant": variant}
    request = ask(intent, rng, tags, file=rel)
    listed = every <= 14 and rng.random() < 0.7

    plural = f"{noun}es" if noun == "class" else f"{noun}s"

    def script(ep: Episode) -> None:
        ep.user(request)
        if listed:
            ep.say(ep.pick(["let me grep for them", "grepping `{f}` for {p}", "listing them with a Grep"],
                           f=rel, p=plural))
            out = ep.call("Grep", pattern=pattern, path=rel).output
            if len(out.splitlines()) != every:
                raise Skip("grep listed something else")
        else:
            ep.say(ep.pick(["`grep -c` will count them", "counting with `grep -c`", "let me count them"]))
            out = ep.call("Bash", command=f"grep -cE '{pattern}' {rel}").output
            if not out.startswith(f"{every}\n"):
                raise Skip("unexpected grep -c output")
        what = noun if every == 1 else plural
        if variant == "defs" and every != top and listed:
            ep.say(f"{every} in `{rel}`: {top} top-level function{'s' * (top != 1)} and {every - top} "
                   f"method{'s' * (every - top != 1)} or nested function{'s' * (every - top != 1)}.")
        else:
            ep.say(ep.rng.choice([f"`{rel}` has {every} {what}.", f"{every} {what} in `{rel}`.",
                                  f"i count {every}."]))
        ep.end()

    def right_number(ws, answer, calls):
        ok = checks.has_number(answer, every) or checks.has_number(answer, top)
        return checks.Outcome(ok, f"counted {every}" if ok else f"the answer gives neither {every} nor {top}")

    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags, check=checks.all_of(_no_change(spec), right_number))


def make_defs(files, rng: random.Random) -> Task | None:
    return _count_task(files, rng, "defs", "count_functions", (ast.FunctionDef, ast.AsyncFunctionDef), DEF_RE,
                       "function")


def make_classes(files, rng: random.Random) -> Task | None:
    return _count_task(files, rng, "classes", "count_classes", (ast.ClassDef,), CLASS_RE, "class")


def make_files(files, rng: random.Random) -> Task | None:
    spec = small_project(files, rng, extra=rng.randint(1, 5))
    n = sum(p.endswith(".py") for p in spec.files)
    tags = {"variant": "files"}
    request = ask("count_files", rng, tags)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["`find` and `wc -l`", "let me count them", "counting the `.py` files"]))
        out = ep.call("Bash", command="find . -name '*.py' | wc -l").output
        if not out.strip().startswith(str(n)):
            raise Skip("unexpected count")
        ep.say(ep.rng.choice([f"{n} python file{'s' * (n != 1)}.", f"there {'are' if n != 1 else 'is'} {n}.",
                              f"{n} `.py` file{'s' * (n != 1)} in here."]))
        ep.end()

    return Task(NAME, spec, script, next(iter(spec.sources.values())), allowed_paths=[], tags=tags,
                check=checks.all_of(_no_change(spec), checks.answer_has(numbers=(n,))))
