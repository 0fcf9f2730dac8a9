"""Follow-up turns: the second request builds on the first (locate then explain, explain then rename,
a change then thanks). The history is real: the second turn continues in the same workspace."""
import random

from training.synth import change, explain, locate, voice
from training.synth.episode import Episode
from training.synth.tasks import (Task, code, grep_unique_definition, pick_file, pick_function, project,
                                  read_lines)

NAME = "followup"
THEN_EXPLAIN = ["what does it do?", "cool, and what does it do?", "explain it please", "ok, what is it for?"]
THANKS = ["thanks!", "perfect, thank you", "nice, thanks :)", "great, ty", "Thanks!"]


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_locate_explain, make_then_thanks, make_explain_rename])(files, rng)


def make_locate_explain(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(explain.explainable(g) for g in f.info.functions))
    fn = pick_function(f, rng, explain.explainable) if f else None
    if fn is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    request = rng.choice(locate.REQUESTS).format(what=code(fn.name))
    follow = rng.choice(THEN_EXPLAIN)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_unique_definition(ep, fn.name, rel, fn.lineno)
        ep.say(ep.rng.choice(locate.ANSWERS).format(path=rel, line=fn.lineno, name=code(fn.name)))
        ep.end()
        ep.user(follow)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(explain.summary(fn, ep.rng))
        ep.end()

    return Task(NAME, spec, script, f.key, turns=2, tags={"variant": "locate_explain"})


def make_then_thanks(files, rng: random.Random) -> Task | None:
    first = change.make(files, rng)
    if first is None:
        return None
    thanks = rng.choice(THANKS)

    def script(ep: Episode) -> None:
        first.script(ep)
        ep.user(thanks)
        ep.say(ep.pick(voice.THANKS_REPLIES))
        ep.end()

    return Task(NAME, first.spec, script, first.key, turns=2, allowed_paths=first.allowed_paths,
                tags={"variant": "thanks"})


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
    request = rng.choice(explain.IN_FILE).format(name=code(fn.name), path=rel)
    follow = rng.choice(["rename it to {n}", "ok, let's call it {n} instead", "please rename it to {n}"]).format(
        n=code(new))

    def script(ep: Episode) -> None:
        ep.user(request)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(explain.summary(fn, ep.rng))
        ep.end()
        ep.user(follow)
        change.rename_steps(ep, fn.name, new, count, rel)
        ep.end()

    return Task(NAME, spec, script, f.key, turns=2, allowed_paths=[rel], tags={"variant": "explain_rename"})
