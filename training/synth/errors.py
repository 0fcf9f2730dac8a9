"""Recovering from errors: a path that does not exist, an Edit whose old_string is ambiguous, a command
that fails, a search that finds nothing. The model says what went wrong, plainly, and what it did next."""
import random
import re

from training.synth import voice
from training.synth.change import pick_default_site
from training.synth.episode import Episode, Skip
from training.synth.explain import explainable, summary
from training.synth.tasks import (Task, ask, code, expect_hit, grep_definition, grep_unique_definition, pick_file,
                                  pick_function, project, read_lines)

NAME = "errors"


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_missing_file, make_ambiguous_edit, make_failing_command, make_no_match])(files, rng)


def make_missing_file(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(explainable(g) for g in f.info.functions))
    fn = pick_function(f, rng, explainable) if f else None
    if fn is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    base = rel.rsplit("/", 1)[-1]
    wrong = rng.choice([d for d in (f"src/{base}", f"lib/{base}", f"utils/{base}", base) if d != rel])
    if any(p == wrong or p.startswith(wrong + "/") for p in spec.files):
        return None
    tags = {"variant": "missing_file"}
    request = ask("explain_file", rng, tags, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls,
                  file=wrong)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(voice.READ_NOTES, path=wrong, line=1))
        ep.call("Read", expect_ok=False, path=wrong)
        ep.say(ep.rng.choice([f"hmm, `{wrong}` doesn't exist. let me search for {code(fn.name)} instead",
                              f"no `{wrong}` here. i'll grep for {code(fn.name)}",
                              f"that path isn't there; searching for {code(fn.name)}"]))
        hits = [(p, int(n)) for p, n in re.findall(r"^(.+?):(\d+):",
                                                     ep.call("Grep", pattern=rf"def {fn.name}\b").output, re.M)]
        expect_hit(hits, rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(f"it's in `{rel}`, not `{wrong}`. " + summary(fn, ep.rng))
        ep.end()

    return Task(NAME, spec, script, f.key, tags=tags)


def make_ambiguous_edit(files, rng: random.Random) -> Task | None:
    """Change a default whose `name=value` text appears more than once: the short Edit fails, the model
    retries with the whole def line."""
    found = pick_default_site(files, rng)
    if found is None:
        return None
    f, fn, line, (p, old, new, edited) = found
    m = re.search(rf"\b{p}\s*=\s*{re.escape(old)}\b", line)
    if m is None:
        return None
    short = m.group(0)
    short_new = short[:-len(old)] + new
    n = f.text.count(short)
    if n < 2 or n > 8:
        return None
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "ambiguous_edit"}
    request = ask("default", rng, tags, p=p, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls,
                  old=old, value=new)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_unique_definition(ep, fn.name, rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, 3)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        ep.call("Edit", expect_ok=False, path=rel, old_string=short, new_string=short_new)
        ep.say(ep.rng.choice([f"{code(short)} shows up {n} times, so i'll include the whole `def` line",
                              f"oops, {code(short)} isn't unique ({n} matches). using the full signature instead",
                              f"that matched {n} places; trying again with more context"]))
        ep.call("Edit", path=rel, old_string=line, new_string=edited)
        ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}: {code(p)} defaults to {new} in {code(fn.name)} now, "
                              "and the other matches are untouched.",
                              f"changed it, {code(fn.name)} uses {code(p + '=' + new)} by default now."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)


MISSING_SCRIPTS = ["main.py", "app.py", "run.py", "manage.py", "cli.py", "server.py", "script.py"]


def make_failing_command(files, rng: random.Random) -> Task | None:
    spec = project(rng.choice(files), files, rng, extra=1)
    missing = rng.choice([s for s in MISSING_SCRIPTS if s not in spec.files])
    tags = {"variant": "failing_command"}
    request = ask("run_script", rng, tags, file=missing, cmd=f"python {missing}")
    cmd = f"python {missing}"

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(voice.RUN_NOTES, cmd=cmd))
        out = ep.call("Bash", expect_ok=False, command=cmd).output
        code_m = re.search(r"\[exit code (\d+)\]", out)
        if "No such file" not in out or code_m is None:
            raise Skip("unexpected failure")
        ep.say(ep.rng.choice([f"`{missing}` isn't here, so nothing ran (exit code {code_m.group(1)}). "
                              "want me to look for the right script?",
                              f"that failed: there's no `{missing}` in this directory. which file did you mean?",
                              f"no luck, python can't find `{missing}`. should i look around for the entry point?"]),
               deny_failure=ep.rng.choice(["it ran fine, no output.", "done, it ran without printing anything."]))
        ep.end()

    return Task(NAME, spec, script, next(iter(spec.sources.values())), allowed_paths=[],
                faults=("deny_failure",), tags=tags)


def fake_name(rng: random.Random, f) -> str:
    base = rng.choice(f.info.functions).name.strip("_") or "thing"
    return rng.choice([f"{base}_all", f"load_{base}", f"{base}_from_config", f"parse_{base}_file", f"get_{base}_map"])


def make_no_match(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    if f is None:
        return None
    spec = project(f, files, rng)
    fake = fake_name(rng, f)
    if any(fake in t for t in spec.files.values()):
        return None
    tags = {"variant": "no_match"}
    request = ask(rng.choice(["locate", "locate", "explain"]), rng, tags, name=fake)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_definition(ep, fake)
        if ep.rng.random() < 0.5:
            ep.say(ep.rng.choice(["nothing. let me try a looser search", "no definition; any mention at all?"]))
            ep.call("Grep", pattern=fake)
        ep.say(ep.rng.choice([f"i couldn't find {code(fake)} anywhere here. maybe it goes by another name?",
                              f"no luck: nothing in this repo defines {code(fake)}. is it from a library, "
                              "or spelled differently?",
                              f"{code(fake)} doesn't exist in this code, as far as grep can tell. want me to look "
                              "for something similar?"]),
               deny_failure=f"{code(fake)} is defined in this repo, it's a small helper.")
        ep.end()

    return Task(NAME, spec, script, f.key, faults=("deny_failure",), tags=tags)
