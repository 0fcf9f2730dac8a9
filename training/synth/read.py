"""Read a file, a span of lines, or the first N lines: one Read (or `head`), then a sentence on what the
lines hold (the module docstring, imports, which functions), so the answer is grounded in what was shown.

A file too long for one result is read in part, and the answer says how much is left: the agent's
context is a few thousand tokens, so paging is the habit to learn (issue 15: "read the file notes.txt"
was answered with a Grep)."""
import ast
import random
import re

from training.synth import checks, textfiles
from training.synth.episode import MAX_RESULT_CHARS, Episode
from training.synth.tasks import Task, ask, code, pick_file, project, small_project

NAME = "read"
READ_NOTES = ["let me read it", "opening `{path}`", "reading `{path}`", "let me open `{path}`", "one Read coming up",
              "here's `{path}`", "let me pull it up"]
ROOM = MAX_RESULT_CHARS - 120  # the Read footer ("[showing lines 1-20 of 300; ...]") and a margin


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_whole, make_whole, make_text, make_span, make_head])(files, rng)


def fits(lines: list[str], a: int, b: int) -> bool:
    return sum(len(x) + 8 for x in lines[a - 1:b]) <= ROOM


def outline(text: str) -> list[tuple[str, str, int, int]]:
    """Top-level (kind, name, first line with decorators, last line) of a module."""
    tree = ast.parse(text)
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out.append(("class" if isinstance(node, ast.ClassDef) else "function", node.name, start, node.end_lineno))
    return out


def docstring_end(text: str) -> int:
    tree = ast.parse(text)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None), ast.Constant) \
            and isinstance(tree.body[0].value.value, str):
        return tree.body[0].end_lineno
    return 0


def contents(text: str, a: int, b: int) -> str:
    """What lines a..b of a module hold, in a few words: 'the module docstring, imports and `f`'."""
    lines = text.splitlines()
    things = []
    if docstring_end(text) >= a:
        things.append("the module docstring")
    if any(re.match(r"(import|from)\s", lines[i - 1]) for i in range(a, min(b, len(lines)) + 1)):
        things.append("imports")
    for kind, name, s, e in outline(text):
        if e < a or s > b:
            continue
        what = code(name) if kind == "function" else f"the class {code(name)}"
        if s < a and e > b:
            things.append(f"the middle of {what}")
        elif s < a:
            things.append(f"the end of {what}")
        elif e > b:
            things.append(f"the start of {what}")
        else:
            things.append(what)
    if not things:
        return "module-level code"
    return things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]


def _python(files, rng):
    f = pick_file(files, rng, lambda f: 8 <= len(f.text.splitlines()))
    if f is None:
        return None
    try:
        outline(f.text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    return f


def make_whole(files, rng: random.Random) -> Task | None:
    f = _python(files, rng)
    if f is None:
        return None
    lines = f.text.splitlines()
    total = len(lines)
    k = total
    while k > 4 and not fits(lines, 1, k):
        k = k * 2 // 3
    if k < 6 and k < total:
        return None
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "whole" if k == total else "paged"}
    request = ask("read_file", rng, tags, file=rel)
    with_limit = k < total or rng.random() < 0.3
    doc = textfiles.module_summary(f.text)
    items = [code(n) if kind == "function" else f"the class {code(n)}" for kind, n, s, e in outline(f.text)]

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(READ_NOTES, path=rel))
        if with_limit:
            ep.call("Read", path=rel, limit=str(k))
        else:
            ep.call("Read", path=rel)
        if k == total:
            head = f"`{rel}` is {total} lines" + (f", {doc}." if doc else ".")
            if items:
                listed = items if len(items) <= 5 else items[:4] + [f"{len(items) - 4} more"]
                head += " it defines " + (listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]) + "."
            ep.say(head)
        else:
            ep.say(ep.rng.choice([
                f"`{rel}` has {total} lines, so i read the first {k}: {contents(f.text, 1, k)}. want me to keep going?",
                f"that's the top {k} of {total} lines: {contents(f.text, 1, k)}. should i read on?",
                f"here are lines 1-{k} of {total} ({contents(f.text, 1, k)}). want the rest, or a specific part?"]))
        ep.end()

    check = checks.all_of(checks.nothing_changed(spec.files), checks.read_covers(rel, 1, min(k, 40)),
                          checks.answer_given())
    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags, check=check)


def make_text(files, rng: random.Random) -> Task | None:
    tf = textfiles.text_file(rng)
    spec = small_project(files, rng, extra=rng.randint(1, 2))
    if tf.rel in spec.files:
        return None
    spec.plant(tf.rel, "", tf.text)
    tags = {"variant": "text"}
    request = ask("read_file", rng, tags, file=tf.rel)
    n = len(tf.text.splitlines())

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(READ_NOTES, path=tf.rel))
        ep.call("Read", path=tf.rel)
        ep.say(ep.rng.choice([f"that's {tf.summary}.", f"`{tf.rel}` is {n} lines: {tf.summary}.",
                              f"here it is, {tf.summary}."]))
        ep.end()

    check = checks.all_of(checks.nothing_changed(spec.files), checks.read_covers(tf.rel, 1, None),
                          checks.answer_given())
    return Task(NAME, spec, script, tf.rel, allowed_paths=[], tags=tags, check=check)


def make_span(files, rng: random.Random) -> Task | None:
    f = _python(files, rng)
    if f is None:
        return None
    lines = f.text.splitlines()
    items = [o for o in outline(f.text) if 4 <= o[3] - o[2] + 1 and fits(lines, o[2], o[3])]
    if items and rng.random() < 0.6:
        _, _, a, b = rng.choice(items)
    else:
        a = rng.randint(1, max(1, len(lines) - 8))
        b = min(len(lines), a + rng.randint(4, 25))
        while b > a + 3 and not fits(lines, a, b):
            b -= 3
    if b - a < 3 or not fits(lines, a, b):
        return None
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "span"}
    request = ask("read_span", rng, tags, file=rel, a=a, b=b)
    what = contents(f.text, a, b)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["reading lines {a}-{b}", "let me open `{path}` at line {a}", "here's that span",
                        "reading `{path}` from line {a}"], a=a, b=b, path=rel))
        ep.call("Read", path=rel, offset=str(a), limit=str(b - a + 1))
        ep.say(ep.rng.choice([f"lines {a}-{b} are {what}.", f"that span is {what}.",
                              f"there you go: {what}."]))
        ep.end()

    check = checks.all_of(checks.nothing_changed(spec.files), checks.read_covers(rel, a, b), checks.answer_given())
    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags, check=check)


def make_head(files, rng: random.Random) -> Task | None:
    f = _python(files, rng)
    if f is None:
        return None
    lines = f.text.splitlines()
    n = rng.choice([5, 10, 10, 15, 20, 20, 25, 30])
    n = min(n, len(lines) - 1)
    while n > 5 and not fits(lines, 1, n):
        n -= 5
    if n < 3 or not fits(lines, 1, n):
        return None
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "head"}
    request = ask("read_head", rng, tags, file=rel, n=n)
    use_head = rng.random() < 0.2
    what = contents(f.text, 1, n)

    def script(ep: Episode) -> None:
        ep.user(request)
        if use_head:
            ep.say(ep.pick(["`head` will do", "a quick `head -n {n}`", "let me print them"], n=n))
            ep.call("Bash", command=f"head -n {n} {rel}")
        else:
            ep.say(ep.pick(READ_NOTES, path=rel))
            ep.call("Read", path=rel, limit=str(n))
        ep.say(ep.rng.choice([f"the first {n} lines are {what}.", f"that's the top of `{rel}`: {what}.",
                              f"here they are: {what}."]))
        ep.end()

    check = checks.all_of(checks.nothing_changed(spec.files), checks.read_covers(rel, 1, n), checks.answer_given())
    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags, check=check)
