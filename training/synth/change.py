"""Targeted changes: Grep -> Read -> Edit. Rename a function or class, change a constant, change a
parameter's default, add a parameter. Each edit is exactly what was asked (SOUL.md: no extras)."""
import ast
import random
import re

from training.synth import voice
from training.synth.episode import Episode, Skip
from training.synth.tasks import (Task, ask, code, expect_hit, grep_unique_definition, pick_file, pick_function,
                                  project, read_lines)

NAME = "change"
SYNONYMS = {"get": "fetch", "fetch": "get", "make": "build", "build": "make", "create": "make",
            "compute": "calculate", "calculate": "compute", "load": "read", "read": "load", "parse": "decode",
            "check": "validate", "validate": "check", "find": "lookup", "remove": "drop", "delete": "remove",
            "update": "refresh", "run": "execute", "handle": "process", "process": "handle",
            "format": "render", "render": "format", "split": "divide", "join": "combine", "new": "fresh",
            "to": "as", "write": "emit", "print": "show", "show": "display", "add": "insert"}


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_rename, make_constant, make_default, make_field, make_add_param])(files, rng)


# -- rename ----------------------------------------------------------------------------------------


def new_name(old: str, rng: random.Random) -> str:
    if old[0].isupper():  # a class
        return rng.choice(["Base", "Simple", "Default"]) + old
    words = old.split("_")
    for i, w in enumerate(words):
        if w in SYNONYMS:
            words[i] = SYNONYMS[w]
            return "_".join(words)
    return old + rng.choice(["_impl", "_helper", "_inner"])


def rename_plan(f, old: str, rng: random.Random) -> tuple[str, int] | None:
    """(new name, occurrences) when renaming `old` in f is a safe replace_all, else None."""
    new = new_name(old, rng)
    count = len(re.findall(rf"\b{old}\b", f.text))
    # Edit replaces substrings: the old name must never be part of a longer identifier in this file.
    if f.text.count(old) != count or not 1 <= count <= 6 or new in f.text:
        return None
    return new, count


def only_in(spec, rel: str, name: str) -> bool:
    return not any(name in t for r, t in spec.files.items() if r != rel)


def rename_steps(ep: Episode, old: str, new: str, count: int, rel: str) -> None:
    """Grep every use (whole workspace, so the answer can say no other file uses it), then one Edit."""
    ep.say(ep.pick(["let me find every use of `{n}`", "grepping for `{n}` first",
                               "first, where is `{n}` used?"], n=old))
    ep.call("Grep", pattern=rf"\b{old}\b")
    ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
    if count > 1:
        ep.call("Edit", path=rel, old_string=old, new_string=new, replace_all="true")
    else:
        ep.call("Edit", path=rel, old_string=old, new_string=new)
    spots = f"{count} spots" if count > 1 else "just the one spot"
    ep.say(ep.rng.choice([f"renamed {code(old)} to {code(new)}: {spots}, all in `{rel}`.",
                          f"{ep.rng.choice(voice.DONE)}, {code(new)} it is ({spots} in `{rel}`).",
                          f"{code(old)} is now {code(new)}. {spots}, and no other file used it."]))


def make_rename(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    if f is None:
        return None
    names = [g.name for g in f.info.functions if g.cls is None] + list(f.info.classes)
    names = [n for n in names if len(n) >= 4 and not n.startswith("__")]
    if not names:
        return None
    old = rng.choice(names)
    plan = rename_plan(f, old, rng)
    if plan is None:
        return None
    new, count = plan
    spec = project(f, files, rng)
    if not only_in(spec, f.rel, old):
        return None
    rel = f.rel
    kind = "class" if old in f.info.classes else "function"
    tags = {"variant": "rename"}
    request = ask("rename", rng, tags, name=old, new=new, kind=kind, file=rel if rng.random() < 0.4 else None)

    def script(ep: Episode) -> None:
        ep.user(request)
        rename_steps(ep, old, new, count, rel)
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)


# -- change a constant -----------------------------------------------------------------------------


def new_number(v, rng: random.Random):
    if isinstance(v, float):
        return rng.choice([v * 2, v / 2, v + 1.0])
    options = [v * 2, v + 1, v + 10, v // 2 if v > 2 else v + 5]
    return rng.choice([o for o in options if o != v])


def constant_site(files, rng: random.Random):
    """A module-level numeric constant whose line is unique in its file: (file, constant, line, match of
    `NAME[: type] = value  # comment`), or None."""
    f = pick_file(files, rng, lambda f: any(isinstance(c.value, (int, float)) for c in f.info.constants))
    if f is None:
        return None
    c = rng.choice([c for c in f.info.constants if isinstance(c.value, (int, float))])
    line = f.info.line(c.lineno)
    m = re.match(rf"^{c.name}\s*(:\s*[\w.\[\], ]+)?=\s*(\S+?)\s*(#.*)?$", line)
    if m is None or f.text.count(line) != 1 or m.group(2) != repr(c.value):
        return None
    return f, c, line, m


def make_constant(files, rng: random.Random) -> Task | None:
    found = constant_site(files, rng)
    if found is None:
        return None
    f, c, line, m = found
    new = new_number(c.value, rng)
    new_line = line[:m.start(2)] + repr(new) + line[m.end(2):]
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "constant"}
    request = ask("constant", rng, tags, name=c.name, kind="constant", old=repr(c.value), value=repr(new))

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me find `{n}`", "grepping for `{n}`", "where's `{n}` set? searching"],
                          n=c.name))
        res = ep.call("Grep", pattern=rf"^{c.name}\s*[:=]")
        expect_hit([(p, int(n)) for p, n in re.findall(r"^(.+?):(\d+):", res.output, re.M)], rel, c.lineno)
        if ep.rng.random() < 0.4:
            read_lines(ep, rel, max(1, c.lineno - 2), 5)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        ep.call("Edit", path=rel, old_string=line, new_string=new_line)
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}, {code(c.name)} is {new!r} now (was {c.value!r}).",
                              f"changed {code(c.name)} from {c.value!r} to {new!r} in `{rel}`.",
                              f"{code(c.name)} = {new!r} now, line {c.lineno} of `{rel}`."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)


# -- change a default ------------------------------------------------------------------------------
NUMBER = re.compile(r"-?\d+(\.\d+)?$")


def default_site(fn, line: str, rng: random.Random):
    """(param, old default, new default, the def line edited) for a numeric or boolean default, or None."""
    options = [p for p in fn.params if p.default is not None and (NUMBER.match(p.default) or p.default in ("True", "False"))]
    if not options or fn.lineno != fn.def_end:
        return None
    p = rng.choice(options)
    rx = re.compile(rf"\b{p.name}(\s*:\s*[^=,()]+?)?\s*=\s*{re.escape(p.default)}(?=\s*[,)])")
    if len(rx.findall(line)) != 1:
        return None
    if p.default in ("True", "False"):
        new = "False" if p.default == "True" else "True"
    else:
        value = float(p.default) if "." in p.default else int(p.default)
        new = repr(new_number(value, rng))
    m = rx.search(line)
    edited = line[:m.start()] + m.group(0)[:-len(p.default)] + new + line[m.end():]
    return p.name, p.default, new, edited


def pick_default_site(files, rng: random.Random):
    """A one-line def with a defaulted parameter, unique in its file: (file, function, line, (param, old,
    new, edited line)), or None."""
    f = pick_file(files, rng, lambda f: any(p.default for g in f.info.functions for p in g.params))
    fn = pick_function(f, rng, lambda g: any(p.default for p in g.params) and g.lineno == g.def_end) if f else None
    if fn is None:
        return None
    line = f.info.line(fn.lineno)
    site = default_site(fn, line, rng)
    if site is None or f.text.count(line) != 1:
        return None
    return f, fn, line, site


def make_default(files, rng: random.Random) -> Task | None:
    found = pick_default_site(files, rng)
    if found is None:
        return None
    f, fn, line, (p, old, new, edited) = found
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "default"}
    request = ask("default", rng, tags, p=p, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls,
                  old=old, value=new)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_unique_definition(ep, fn.name, rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, 3)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        ep.call("Edit", path=rel, old_string=line, new_string=edited)
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: {code(p)} now defaults to {new} in {code(fn.name)}.",
                              f"changed the default of {code(p)} from {old} to {new}.",
                              f"{code(fn.name)} uses {code(p + '=' + new)} by default now."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)


# -- change a class attribute's default (a dataclass field, a class constant) -----------------------
# "change the default retries to 5" (a dataclass field) made the model shipped on 2026-12-04 grep for
# `def retries`: a default that is not a parameter was never in its data.

def field_site(f):
    """(class, attribute, line number, value) of each one-line numeric class attribute of a file."""
    try:
        tree = ast.parse(f.text)
    except (SyntaxError, ValueError, RecursionError):
        return []
    sites = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for sub in node.body:
            target = sub.target if isinstance(sub, ast.AnnAssign) else (
                sub.targets[0] if isinstance(sub, ast.Assign) and len(sub.targets) == 1 else None)
            value = getattr(sub, "value", None)
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and sub.lineno == sub.end_lineno \
                    and isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
                sites.append((node.name, target.id, sub.lineno, value.value))
    return sites


def make_field(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.classes))
    sites = field_site(f) if f else []
    if not sites:
        return None
    cls, attr, lineno, value = rng.choice(sites)
    line = f.info.line(lineno)
    m = re.match(rf"^\s+{attr}\s*(:\s*[^=]+?)?=\s*(\S+?)\s*(#.*)?$", line)
    if m is None or m.group(2) != repr(value) or f.text.count(line) != 1:
        return None
    new = new_number(value, rng)
    edited = line[:m.start(2)] + repr(new) + line[m.end(2):]
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "field"}
    request = ask("default", rng, tags, p=attr, name=cls, kind="class", old=repr(value), value=repr(new))

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["where is `{a}` set? grepping", "let me find the `{a}` attribute", "searching for `{a} =`"],
                       a=attr))
        res = ep.call("Grep", pattern=rf"^\s+{attr}\s*[:=]")
        hits = [(p, int(n)) for p, n in re.findall(r"^(.+?):(\d+):", res.output, re.M)]
        expect_hit(hits, rel, lineno)
        if len(hits) != 1:
            raise Skip("the attribute is set in several places")
        if ep.rng.random() < 0.4:
            read_lines(ep, rel, max(1, lineno - 2), 5)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        ep.call("Edit", path=rel, old_string=line, new_string=edited)
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: {code(cls + '.' + attr)} defaults to {new!r} now "
                              f"(was {value!r}).",
                              f"changed {code(attr)} in {code(cls)} from {value!r} to {new!r}, line {lineno} of `{rel}`.",
                              f"{code(attr)} = {new!r} now in {code(cls)}."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)


# -- add a parameter -------------------------------------------------------------------------------
NEW_PARAMS = [("verbose", "False"), ("strict", "False"), ("debug", "False"), ("quiet", "False"),
              ("dry_run", "False"), ("timeout", "None"), ("retries", "3")]


def make_add_param(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions))

    def ok(g):
        return g.lineno == g.def_end and all(p.kind == "positional" for p in g.params)

    fn = pick_function(f, rng, ok) if f else None
    if fn is None:
        return None
    pname, default = rng.choice(NEW_PARAMS)
    if any(p.name == pname for p in fn.params):
        return None
    line = f.info.line(fn.lineno)
    m = re.match(rf"^(\s*(?:async\s+)?def {fn.name}\()(.*)(\)(\s*->\s*[^:]+)?:\s*)$", line)
    if m is None or m.group(2).rstrip().endswith(",") or f.text.count(line) != 1:
        return None
    params = m.group(2) + (", " if m.group(2).strip() else "") + f"{pname}={default}"
    edited = m.group(1) + params + m.group(3)
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "add_param"}
    request = ask("add_param", rng, tags, p=pname, pd=f"{pname}={default}", value=default, name=fn.name,
                  kind="method" if fn.cls else "function", cls=fn.cls)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_unique_definition(ep, fn.name, rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, 4)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        ep.call("Edit", path=rel, old_string=line, new_string=edited)
        ep.say(ep.rng.choice([
            f"added {code(pname + '=' + default)} to {code(fn.name)}. nothing uses it yet; want me to wire it in?",
            f"{ep.rng.choice(voice.DONE)}: {code(fn.name)} takes {code(pname)} now (default {default}). "
            "the body doesn't use it yet.",
            f"{code(fn.name)} has a {code(pname)} parameter now, defaulting to {default}."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)
