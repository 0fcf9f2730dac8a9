"""Delete a function: Grep for its uses -> Read it -> one Edit that replaces it (and the blank lines after
it) with nothing. Uses elsewhere are not touched, but the answer names them: deleting what was asked is
the job, and breaking callers is something to say out loud (SOUL.md: mention it in a line, leave it)."""
import random
import re

from training.synth import checks, voice
from training.synth.episode import Episode, Skip
from training.synth.sources import analyze
from training.synth.tasks import GREP_HIT, Task, ask, code, pick_file, pick_function, project, read_lines

NAME = "delete"


def deletable(g) -> bool:
    return g.n_lines <= 26 and not g.name.startswith("__") and len(g.name) >= 3


def make(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(deletable(g) for g in f.info.functions))
    fn = pick_function(f, rng, deletable) if f else None
    if fn is None:
        return None
    lines = f.text.splitlines(keepends=True)
    if fn.lineno > 1 and lines[fn.lineno - 2].lstrip().startswith("@"):
        return None  # decorated: the decorator would have to go too
    end = fn.end_lineno
    while end < len(lines) and not lines[end].strip():
        end += 1  # the blank lines after it go with it
    block = "".join(lines[fn.lineno - 1:end])
    if end == len(lines) or f.text.count(block) != 1 or analyze(f.text.replace(block, "", 1)) is None:
        return None  # the last thing in the file, or a class left with an empty body
    spec, rel = project(f, files, rng), f.rel
    pattern = rf"\b{fn.name}\b"
    expected = [(p, i) for p, t in spec.files.items() for i, line in enumerate(t.splitlines(), 1) if re.search(pattern, line)]
    inside = set(range(fn.lineno, fn.end_lineno + 1))
    uses = [(p, i) for p, i in expected if not (p == rel and i in inside)]
    if len(expected) > 9:
        return None
    named_file = rng.random() < 0.5
    tags = {"variant": "used" if uses else "unused"}
    request = ask("delete_function", rng, tags, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls,
                  file=rel if named_file else None)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["first, is `{n}` used anywhere?", "let me check who uses `{n}`", "grepping for `{n}` first"],
                       n=fn.name))
        out = ep.call("Grep", pattern=pattern).output
        if sorted((p, int(n)) for p, n in GREP_HIT.findall(out)) != sorted(expected):
            raise Skip("grep found something else")
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(ep.pick(["removing it", "deleting the whole function", "cutting it out"]))
        ep.call("Edit", path=rel, old_string=block, new_string="")
        done = f"{ep.rng.choice(voice.DONE)}: {code(fn.name)} is gone from `{rel}`"
        if uses:
            where = ", ".join(f"`{p}:{n}`" for p, n in uses[:4])
            ep.say(f"{done}. heads up, it's still used at {where}, so that will break. want me to deal with those too?")
        else:
            ep.say(ep.rng.choice([f"{done}. nothing else referred to it.", f"{done}, and no other code used it."]))
        ep.end()

    original = spec.files[rel]

    def deleted(ws, answer, calls):
        text = (ws / rel).read_text(encoding="utf-8", errors="replace")
        if checks.module_without(text, fn.name) is None:
            return checks.Outcome(False, f"{rel} no longer parses")
        if checks.module_without(text, fn.name) != checks.module_without(original, fn.name):
            return checks.Outcome(False, f"{rel} changed beyond removing {fn.name}")
        if checks.defines(text, fn.name):  # the name is defined once in the file (pick_function)
            return checks.Outcome(False, f"{fn.name} is still defined")
        return checks.Outcome(True, f"deleted {fn.name}")

    check = checks.all_of(checks.only_changed(spec.files, {rel}), deleted)
    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags, check=check)
