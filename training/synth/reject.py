"""The user rejects a call. The model takes it gracefully: acknowledges, never retries the same call,
and either takes the alternative the user offered or asks what to do instead (SOUL.md)."""
import random
import re

from training.synth import voice
from training.synth.change import constant_site, new_number
from training.synth.episode import Episode
from training.synth.tasks import Task, ask, code, expect_hit, grep_definition, pick_file, project

NAME = "reject"
ASK = ["ok, i'll leave it. what would you like me to do instead?", "no problem, i won't touch it. what should i do instead?",
       "got it, leaving {n} as is. anything else you'd like?", "sure, no change then. want me to try something else?"]
PUSHY = ["but i need this call, so let me try once more", "hmm, that one matters. trying again",
         "i'll just try it again"]


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_edit_rejected, make_edit_rejected, make_bash_rejected])(files, rng)


def make_edit_rejected(files, rng: random.Random) -> Task | None:
    """Change a constant; the user rejects the Edit: silently, with a different value, or silently and
    then says what they want in the next turn."""
    found = constant_site(files, rng)
    if found is None:
        return None
    f, c, line, m = found
    new, alt = new_number(c.value, rng), new_number(c.value, rng)
    if alt == new:
        return None
    with_value = lambda v: line[:m.start(2)] + repr(v) + line[m.end(2):]
    spec, rel = project(f, files, rng), f.rel
    variant = rng.choice(["silent", "note", "next_turn"])
    note = rng.choice(["make it {a} instead", "no, use {a}", "{a} please, not {n}"]).format(a=alt, n=new) \
        if variant == "note" else ""
    tags = {"variant": f"edit_{variant}"}
    request = ask("constant", rng, tags, name=c.name, kind="constant", old=repr(c.value), value=repr(new))
    follow = ask("then_set", rng, tags, value=repr(alt)) if variant == "next_turn" else None
    name = code(c.name)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me find `{n}`", "grepping for `{n}`"], n=c.name))
        res = ep.call("Grep", pattern=rf"^{c.name}\s*[:=]")
        expect_hit([(p, int(n)) for p, n in re.findall(r"^(.+?):(\d+):", res.output, re.M)], rel, c.lineno)
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        edit = dict(path=rel, old_string=line, new_string=with_value(new))
        ep.decline("Edit", note, **edit)
        if ep.active("pushy"):
            ep.say(ep.rng.choice(PUSHY))
            ep.decline("Edit", note, **edit)
        if variant == "note":
            ep.say(ep.rng.choice([f"sure, {alt!r} then", f"ok, {alt!r} it is", f"got it, using {alt!r}"]))
            ep.call("Edit", path=rel, old_string=line, new_string=with_value(alt))
            ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}, {name} is {alt!r} now.",
                                  f"{name} = {alt!r} in `{rel}` now."]))
        else:
            ep.say(ep.rng.choice(ASK).format(n=name))
        ep.end()
        if variant == "next_turn":
            ep.user(follow)
            ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
            ep.call("Edit", path=rel, old_string=line, new_string=with_value(alt))
            ep.say(ep.rng.choice([f"{ep.rng.choice(voice.DONE)}, {name} is {alt!r} now.",
                                  f"changed {name} to {alt!r}."]))
            ep.end()

    turns = 2 if variant == "next_turn" else 1
    # A fault goes into the last turn; for the two-turn variant the rejection is in the first, so `pushy`
    # only applies to the one-turn ones.
    return Task(NAME, spec, script, f.key, turns=turns, allowed_paths=[rel],
                faults=("pushy",) if turns == 1 else (), tags=tags)


def make_bash_rejected(files, rng: random.Random) -> Task | None:
    """Running a script is rejected: silently (ask what instead), or with 'just tell me where X is'."""
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    if f is None:
        return None
    fn = rng.choice(f.info.functions)
    spec, rel = project(f, files, rng), f.rel
    cmd = f"python {rel}"
    with_note = rng.random() < 0.5
    note = f"don't run anything, just tell me where `{fn.name}` is defined" if with_note else ""
    tags = {"variant": "bash_note" if with_note else "bash_silent"}
    request = ask("run_script", rng, tags, cmd=cmd, file=rel)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(voice.RUN_NOTES, cmd=cmd))
        ep.decline("Bash", note, command=cmd)
        if ep.active("pushy"):
            ep.say(ep.rng.choice(PUSHY))
            ep.decline("Bash", note, command=cmd)
        if with_note:
            ep.say(ep.rng.choice(["ok, no running.", "sure, reading only."]))
            hits = grep_definition(ep, fn.name)
            expect_hit(hits, rel, fn.lineno)
            where = ", ".join(f"`{p}:{n}`" for p, n in hits[:4])
            ep.say(ep.rng.choice([f"{code(fn.name)} is defined at {where}.", f"it's at {where}."]))
        else:
            ep.say(ep.rng.choice(["no problem, i won't run it. anything else you'd like?",
                                  "ok, not running it. what would you like me to do instead?"]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[], faults=("pushy",),
                tags=tags)
