"""Add a docstring: (Grep) -> Read the function -> Edit that inserts one line under the `def`.

The function is a real one whose one-line docstring was taken out of the workspace, so the docstring the
teacher writes back is the one its author wrote for that code."""
import random
import re

from training.synth import checks, voice
from training.synth.episode import Episode
from training.synth.tasks import (Task, ask, code, grep_in_file, grep_unique_definition, pick_file, pick_function,
                                  project, read_lines)

NAME = "docstring"


def documentable(g) -> bool:
    """A one-line docstring right under a one-line def, a body after it, short enough to read whole."""
    return bool(g.doc) and g.def_end == g.lineno and g.doc_end == g.lineno + 1 and g.body_start > g.doc_end \
        and g.n_lines <= 26 and "\n" not in g.doc and not g.is_async


def make(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(documentable(g) for g in f.info.functions))
    fn = pick_function(f, rng, documentable) if f else None
    if fn is None:
        return None
    def_line, doc_line, body_line = (f.info.line(n) for n in (fn.lineno, fn.lineno + 1, fn.lineno + 2))
    if not re.match(r'^\s*"""[^"\\]+"""\s*$', doc_line):
        return None
    spec, rel = project(f, files, rng), f.rel
    planted = f"{def_line}\n{doc_line}\n"
    if f.text.count(planted) != 1:
        return None
    spec.plant(rel, planted, f"{def_line}\n")
    original = spec.files[rel]
    old = f"{def_line}\n{body_line}"
    if original.count(old) != 1:
        return None
    new = f"{def_line}\n{doc_line}\n{body_line}"
    tags = {}
    request = ask("add_docstring", rng, tags, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls,
                  file=rel if rng.random() < 0.4 else None)
    named_file = rel in request  # the user said where: no search needed
    tags["variant"] = "in_file" if named_file else "grep"
    n_lines = fn.n_lines - 1
    doc = doc_line.strip()

    def script(ep: Episode) -> None:
        ep.user(request)
        if named_file:
            grep_in_file(ep, fn.name, rel, fn.lineno)
        else:
            grep_unique_definition(ep, fn.name, rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, n_lines)
        ep.say(ep.pick(["adding it under the `def` line", "here's the docstring", "inserting one line"]))
        ep.call("Edit", path=rel, old_string=old, new_string=new)
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: {code(fn.name)} now starts with `{doc}`.",
                              f"added `{doc}` to {code(fn.name)} in `{rel}`.",
                              f"{code(fn.name)} has a docstring now: `{doc}`."]))
        ep.end()

    def documented(ws, answer, calls):
        text = (ws / rel).read_text(encoding="utf-8", errors="replace")
        if checks.module_without(text, "", docstring_of=fn.name) != checks.module_without(original, "", docstring_of=fn.name):
            return checks.Outcome(False, f"{rel} changed beyond a docstring on {fn.name}")
        import ast
        for node in ast.walk(ast.parse(text)):
            if getattr(node, "name", None) == fn.name and ast.get_docstring(node):
                return checks.Outcome(True, f"{fn.name} has a docstring")
        return checks.Outcome(False, f"{fn.name} has no docstring")

    check = checks.all_of(checks.only_changed(spec.files, {rel}), documented)
    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags, check=check)
