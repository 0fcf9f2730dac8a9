"""Rename across files: Grep `\\bold\\b` over the project -> one Edit per file that uses it (replace_all
where it occurs more than once) -> the answer lists the files. The other files are what a real package
has: a module re-exporting the name and a test importing it."""
import random
import re

from training.synth import checks, voice
from training.synth.change import new_name
from training.synth.episode import Episode, Skip
from training.synth.tasks import GREP_HIT, Task, ask, code, pick_file, project

NAME = "renames"


def users(module: str, name: str, rng: random.Random) -> dict[str, str]:
    """Files that import `name` from `module`: an `api.py` re-export, a test, a small entry point."""
    out = {}
    pick = rng.sample(["api", "test", "main"], rng.randint(1, 3))
    if "api" in pick:
        out[rng.choice(["api.py", "exports.py", "public.py"])] = (
            f'"""The public names of this package."""\nfrom {module} import {name}\n\n__all__ = ["{name}"]\n')
    if "test" in pick:
        out[f"tests/test_{name.strip('_').lower()}.py"] = (
            f"from {module} import {name}\n\n\ndef test_{name.strip('_').lower()}_is_callable():\n"
            f"    assert callable({name})\n")
    if "main" in pick:
        out[rng.choice(["main.py", "cli.py", "run.py"])] = (
            f"import sys\n\nfrom {module} import {name}\n\n\nif __name__ == \"__main__\":\n"
            f"    print({name}.__name__, sys.argv[1:])\n")
    return out


def make(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions or f.info.classes))
    if f is None:
        return None
    names = [g.name for g in f.info.functions if g.cls is None] + list(f.info.classes)
    names = [n for n in names if len(n) >= 4 and not n.startswith("_")]
    if not names:
        return None
    old = rng.choice(names)
    new = new_name(old, rng)
    if old not in f.text or new in f.text or f.text.count(old) != len(re.findall(rf"\b{old}\b", f.text)):
        return None
    spec, rel = project(f, files, rng, extra=1), f.rel
    module = rel[:-3].replace("/", ".")
    for p, text in users(module, old, rng).items():
        if p in spec.files:
            return None
        spec.plant(p, "", text)
    if any(new in t for t in spec.files.values()):
        return None
    counts = {p: t.count(old) for p, t in spec.files.items() if t.count(old)}
    if any(len(re.findall(rf"\b{old}\b", spec.files[p])) != k for p, k in counts.items()) or sum(counts.values()) > 12:
        return None  # old is part of a longer name somewhere: a plain replace would break it
    kind = "class" if old in f.info.classes else "function"
    tags = {"variant": f"files_{len(counts)}"}
    request = ask("rename_all", rng, tags, name=old, new=new, kind=kind)
    originals = dict(spec.files)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me find every use of `{n}`", "grepping the project for `{n}`",
                        "first, where is `{n}` used?"], n=old))
        out = ep.call("Grep", pattern=rf"\b{old}\b").output
        if sorted({p for p, _ in GREP_HIT.findall(out)}) != sorted(counts):
            raise Skip("grep found other files")
        ep.say(ep.pick(["{k} files to change, one Edit each", "editing them one by one"], k=len(counts)))
        first = True
        for p in sorted(counts, key=lambda p: p != rel):
            if not first:
                ep.say(ep.pick(["next, `{p}`", "now `{p}`", "then `{p}`"], p=p))
            first = False
            if counts[p] > 1:
                ep.call("Edit", path=p, old_string=old, new_string=new, replace_all="true")
            else:
                ep.call("Edit", path=p, old_string=old, new_string=new)
        listed = ", ".join(f"`{p}`" + (f" ({counts[p]} spots)" if counts[p] > 1 else "") for p in sorted(counts))
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: {code(old)} is {code(new)} now in {listed}.",
                              f"renamed {code(old)} to {code(new)} across {len(counts)} files: {listed}."]))
        ep.end()

    def renamed(ws, answer, calls):
        now = checks.snapshot(ws)
        for p, text in originals.items():
            want = text.replace(old, new)
            if now.get(p) != want:
                return checks.Outcome(False, f"{p} is not {old} renamed to {new}"
                                      + (" (still uses the old name)" if old in now.get(p, "") else ""))
        return checks.Outcome(True, f"renamed in {len(counts)} files")

    check = checks.all_of(checks.only_changed(spec.files, set(counts)), renamed)
    return Task(NAME, spec, script, f.key, allowed_paths=sorted(counts), tags=tags, check=check)
