"""Follow-up turns: the second request builds on the first (locate then explain, explain then rename,
a change then thanks). The history is real: the second turn continues in the same workspace."""
import random

from training.synth import change, explain, locate, voice
from training.synth.episode import Episode
from training.synth.tasks import (Task, ask, code, grep_in_file, grep_unique_definition, pick_file, pick_function, project,
                                  read_lines)

NAME = "followup"


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_locate_explain, make_then_thanks, make_explain_rename])(files, rng)


def make_locate_explain(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(explain.explainable(g) for g in f.info.functions))
    fn = pick_function(f, rng, explain.explainable) if f else None
    if fn is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    tags = {"variant": "locate_explain"}
    request = ask("locate", rng, tags, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls)
    follow = ask("then_explain", rng, tags)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_unique_definition(ep, fn.name, rel, fn.lineno)
        ep.say(ep.rng.choice(locate.ANSWERS).format(path=rel, line=fn.lineno, name=code(fn.name)))
        ep.end()
        ep.user(follow)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(explain.summary(fn, ep.rng))
        ep.end()

    return Task(NAME, spec, script, f.key, turns=2, tags=tags)


def make_then_thanks(files, rng: random.Random) -> Task | None:
    first = change.make(files, rng)
    if first is None:
        return None
    tags = {**first.tags, "patterns": list(first.tags.get("patterns", [])), "variant": "thanks"}
    thanks = ask("thanks", rng, tags)

    def script(ep: Episode) -> None:
        first.script(ep)
        ep.user(thanks)
        ep.say(ep.pick(voice.THANKS_REPLIES))
        ep.end()

    return Task(NAME, first.spec, script, first.key, turns=2, allowed_paths=first.allowed_paths, tags=tags,
                check=first.check)


def make_explain_rename(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(explain.explainable(g) and g.cls is None for g in f.info.functions))
    fn = pick_function(f, rng, lambda g: explain.explainable(g) and g.cls is None and len(g.name) >= 4) if f else None
    if fn is None:
        return None
    plan = change.rename_plan(f, fn.name, rng)
    if plan is None:
        return None
    new, count = plan
    spec, rel = project(f, files, rng), f.rel
    if not change.only_in(spec, rel, fn.name):
        return None
    tags = {"variant": "explain_rename"}
    request = ask("explain_file", rng, tags, name=fn.name, kind="function", file=rel)
    follow = ask("then_rename", rng, tags, new=new)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_in_file(ep, fn.name, rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(explain.summary(fn, ep.rng))
        ep.end()
        ep.user(follow)
        change.rename_steps(ep, fn.name, new, count, rel)
        ep.end()

    return Task(NAME, spec, script, f.key, turns=2, allowed_paths=[rel], tags=tags)
