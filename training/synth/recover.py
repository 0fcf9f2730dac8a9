"""Recovering from an error result with a *different* next call, never the same one again:

    typo        the user's name is slightly off: the exact Grep finds nothing -> a looser pattern
                (case-insensitive, `_` optional, no word boundary) -> the real name, said as a guess
    replace_all Edit says "occurs 3 times" for a name -> all of them, with replace_all
    find_file   Read says the path does not exist -> `find` the file by name -> Read the real path
    exact_text  the user's snippet differs from the file (spacing) -> Edit fails -> Read the line -> Edit
                with the text as it really is

The shipped model, after one failed call, gave up or repeated the identical call (issue 15); the agent
loop stops a turn after three identical failures (agent/loop.py)."""
import random
import re

from training.synth import checks, voice
from training.synth.change import constant_site, new_name, new_number
from training.synth.episode import Episode, Skip
from training.synth.explain import explainable, summary
from training.synth.read import contents, fits
from training.synth.tasks import GREP_HIT, Task, ask, code, pick_file, pick_function, project, read_lines

NAME = "recover"


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_typo, make_typo, make_replace_all, make_find_file, make_exact_text])(files, rng)


# -- a typo'd name -------------------------------------------------------------------------------

def words_of(name: str) -> list[str]:
    """parse_args, parseArgs, ParseArgs -> ['parse', 'args']."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)]


def typo_of(name: str, rng: random.Random) -> str | None:
    """A near miss a person would type: cut short, camelCase for snake_case (or back), a dropped or added s."""
    ws = words_of(name)
    options = []
    if len(name) >= 8 and name[-1].isalpha():
        options.append(name[:-1])
    if len(ws) >= 2 and "_" in name:
        options.append(ws[0] + "".join(w.capitalize() for w in ws[1:]))
    if len(ws) >= 2 and "_" not in name and name[0].islower():
        options.append("_".join(ws))
    if name.endswith("s") and len(name) >= 6:
        options.append(name[:-1])
    elif len(name) >= 5 and name[-1].isalpha():
        options.append(name + "s")
    options = [o for o in options if o != name and o.isidentifier()]
    return rng.choice(options) if options else None


def loose_pattern(typo: str) -> str:
    """What a person tries next: any case, underscores optional, the last word may be cut or longer."""
    ws = words_of(typo)
    ws[-1] = ws[-1].rstrip("s") or ws[-1]
    return "(?i)def \\w*" + "_?".join(ws) + "\\w*"


def make_typo(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(explainable(g) for g in f.info.functions))
    fn = pick_function(f, rng, lambda g: explainable(g) and len(g.name) >= 5) if f else None
    if fn is None:
        return None
    typo = typo_of(fn.name, rng)
    if typo is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    if any(re.search(rf"def {typo}\b", t) for t in spec.files.values()):
        return None
    loose = loose_pattern(typo)
    found = [(p, i) for p, t in spec.files.items() for i, line in enumerate(t.splitlines(), 1) if re.search(loose, line)]
    if (rel, fn.lineno) not in found or len(found) > 4:
        return None
    intent = rng.choice(["locate", "explain"])
    tags = {"variant": f"typo_{intent}"}
    request = ask(intent, rng, tags, name=typo, kind="method" if fn.cls else "function", cls=fn.cls)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(voice.GREP_NOTES, name=typo))
        ep.call("Grep", pattern=rf"def {typo}\b")
        ep.say(ep.pick([f"no `{typo}` exactly. trying a looser pattern", f"nothing named `{typo}`; loosening the search",
                        "no exact match, so any case, with or without underscores"]))
        out = ep.call("Grep", pattern=loose).output
        hits = [(p, int(n)) for p, n in GREP_HIT.findall(out)]
        if sorted(hits) != sorted(found):
            raise Skip("the loose grep found something else")
        guess = f"there's no {code(typo)}, but there is {code(fn.name)} at `{rel}:{fn.lineno}`, probably the one you mean."
        if intent == "locate":
            others = len(hits) - 1
            ep.say(guess + (f" ({others} other near match{'es' * (others != 1)} in the search above.)" if others else ""))
        else:
            read_lines(ep, rel, fn.lineno, fn.n_lines)
            ep.say(f"no {code(typo)} here; i read {code(fn.name)}, which is probably it. " + summary(fn, ep.rng))
        ep.end()

    need = (fn.name, rel.split("/")[-1]) if intent == "locate" else (fn.name,)
    check = checks.all_of(checks.nothing_changed(spec.files), checks.answer_has(*need))
    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags, check=check)


# -- "occurs N times" -> replace_all ----------------------------------------------------------------

def make_replace_all(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    if f is None:
        return None
    params = sorted({p.name for g in f.info.functions for p in g.params if len(p.name) >= 5 and p.name != "self"})
    rng.shuffle(params)
    for old in params[:6]:
        k = len(re.findall(rf"\b{old}\b", f.text))
        new = new_name(old, rng)
        if 2 <= k <= 8 and f.text.count(old) == k and new not in f.text and new != old:
            break
    else:
        return None
    spec, rel = project(f, files, rng, extra=1), f.rel
    lines = [i for i, line in enumerate(f.text.splitlines(), 1) if old in line]
    tags = {"variant": "replace_all"}
    request = ask("replace_text", rng, tags, old_code=old, new_code=new, file=rel)
    expected = f.text.replace(old, new)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        out = ep.call("Edit", expect_ok=False, path=rel, old_string=old, new_string=new).output
        if f"occurs {k} times" not in out:
            raise Skip("unexpected Edit error")
        where = ", ".join(map(str, lines[:6]))
        ep.say(ep.rng.choice([f"`{old}` is in {k} places (lines {where}); it's one name, so all of them",
                              f"{k} matches, on lines {where}. renaming just one would break the code, so replace_all",
                              f"it occurs {k} times. changing every one"]))
        ep.call("Edit", path=rel, old_string=old, new_string=new, replace_all="true")
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: all {k} `{old}` are `{new}` now in `{rel}`.",
                              f"replaced `{old}` with `{new}` in all {k} spots of `{rel}`."]))
        ep.end()

    check = checks.all_of(checks.only_changed(spec.files, {rel}), checks.file_is(rel, expected))
    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags, check=check)


# -- file not found -> find it ---------------------------------------------------------------------

def make_find_file(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: "/" in f.rel and len(f.text.splitlines()) >= 12)
    if f is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    base = rel.rsplit("/", 1)[1]
    wrong = rng.choice([base, f"src/{base}", f"lib/{base}", f"{rel.split('/')[0]}s/{base}"])
    if wrong in spec.files or sum(p.endswith("/" + base) or p == base for p in spec.files) != 1:
        return None
    lines = f.text.splitlines()
    n = rng.choice([10, 15, 20])
    while n > 4 and not fits(lines, 1, n):
        n -= 3
    tags = {"variant": "find_file"}
    request = ask("read_head", rng, tags, file=wrong, n=n) if rng.random() < 0.5 else ask("read_file", rng, tags, file=wrong)
    what = contents(f.text, 1, n)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["opening `{p}`", "let me read `{p}`", "reading it"], p=wrong))
        ep.call("Read", expect_ok=False, path=wrong, limit=str(n))
        ep.say(ep.pick([f"`{wrong}` isn't there. let me find `{base}`", f"no such path; searching for `{base}`",
                        f"not at `{wrong}`. where is `{base}`?"]))
        out = ep.call("Bash", command=f"find . -name {base}").output
        if f"./{rel}" not in out:
            raise Skip("find did not show it")
        ep.say(ep.pick(["it's at `{r}`, reading that", "found it in `{d}/`", "there: `{r}`"], r=rel, d=rel.rsplit("/", 1)[0]))
        ep.call("Read", path=rel, limit=str(n))
        ep.say(ep.rng.choice([f"the file is `{rel}`, not `{wrong}`. its first {n} lines are {what}.",
                              f"found it at `{rel}`: the top {n} lines are {what}."]))
        ep.end()

    check = checks.all_of(checks.nothing_changed(spec.files), checks.read_covers(rel, 1, min(n, 10)),
                          checks.answer_has(rel))
    return Task(NAME, spec, script, f.key, allowed_paths=[], tags=tags, check=check)


# -- the user's snippet is not the file's text -> read, then edit exactly ---------------------------

def make_exact_text(files, rng: random.Random) -> Task | None:
    found = constant_site(files, rng)
    if found is None:
        return None
    f, c, line, m = found
    if not re.match(rf"^{c.name} = \S", line):
        return None
    new = new_number(c.value, rng)
    typed_old, typed_new = f"{c.name}={c.value!r}", f"{c.name}={new!r}"
    if typed_old in f.text:
        return None
    fixed = line[:m.start(2)] + repr(new) + line[m.end(2):]
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "exact_text"}
    request = ask("edit_exact", rng, tags, require=rel, old_code=typed_old, new_code=typed_new, file=rel)
    expected = f.text.replace(line, fixed, 1)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        out = ep.call("Edit", expect_ok=False, path=rel, old_string=typed_old, new_string=typed_new).output
        if "not found" not in out:
            raise Skip("unexpected Edit error")
        ep.say(ep.pick(["not found as typed; let me read the real line", "the text differs a bit, checking the file",
                        "no exact match, reading the lines around it"]))
        ep.call("Read", path=rel, offset=str(max(1, c.lineno - 1)), limit="3")
        ep.say(ep.pick([f"it's written `{line.strip()}` with spaces; editing that", "got the exact text, editing",
                        "there it is, with spaces around the `=`"]))
        ep.call("Edit", path=rel, old_string=line, new_string=fixed)
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: `{fixed.strip()}` on line {c.lineno} of `{rel}`.",
                              f"changed it, {code(c.name)} is {new!r} now (line {c.lineno})."]))
        ep.end()

    check = checks.all_of(checks.only_changed(spec.files, {rel}), checks.file_is(rel, expected))
    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags, check=check)
