"""Explain a function: (Grep) -> Read -> a short summary grounded in its docstring and code."""
import random

from training.synth.episode import Episode, Skip
from training.synth.tasks import (Task, ask, code, doc_sentence, expect_hit, facts, grep_definition, grep_in_file,
                                  pick_file, pick_function, project, read_lines)

NAME = "explain"
OPENERS = ["{name} {rest}.", "so, {name} {rest}.", "short version: {name} {rest}.", "{name} {rest}, basically."]


def explainable(g) -> bool:
    """Short enough to read whole, and with something to say: a usable docstring, or what it returns or
    raises (the same conditions under which tasks.facts() reports them)."""
    return g.n_lines <= 28 and (bool(doc_sentence(g)) or 1 <= len(set(g.returns)) <= 2 or bool(g.raises))


def make(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(explainable(g) for g in f.info.functions))
    if f is None:
        return None
    fn = pick_function(f, rng, explainable)
    if fn is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    named_file = rng.random() < 0.35
    tags = {}
    request = ask("explain_file" if named_file else "explain", rng, tags, name=fn.name,
                  kind="method" if fn.cls else "function", cls=fn.cls, file=rel if named_file else None)

    def script(ep: Episode) -> None:
        ep.user(request)
        if named_file:
            grep_in_file(ep, fn.name, rel, fn.lineno)
        else:
            expect_hit(grep_definition(ep, fn.name), rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(summary(fn, ep.rng))
        ep.end()

    return Task(NAME, spec, script, f.key, tags=tags)


def summary(fn, rng: random.Random) -> str:
    desc = doc_sentence(fn)
    found = facts(fn, rng)
    if desc:
        first = rng.choice(OPENERS).format(name=code(fn.name), rest=desc.removeprefix("it "))
    elif found:
        first = f"{code(fn.name)} has no docstring, but from the code: {found.pop(0)}."
    else:
        raise Skip(f"nothing to say about {fn.name}")
    rest = [s + "." for s in found]
    if fn.cls and rng.random() < 0.5:
        rest.append(f"it's a method of {code(fn.cls)}.")
    return " ".join([first] + rest)
