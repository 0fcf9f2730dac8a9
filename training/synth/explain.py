"""Explain a function: (Grep) -> Read -> a short summary grounded in its docstring and code."""
import random

from training.synth.episode import Episode, Skip
from training.synth.tasks import (Task, code, doc_sentence, expect_hit, facts, grep_definition, pick_file,
                                  pick_function, project, read_lines)

NAME = "explain"
REQUESTS = ["what does {name} do?", "explain {name}", "can you explain what {name} does?",
            "how does {name} work?", "what's {name} for?", "quick summary of {name} please",
            "What does {name} do", "tell me what {name} does"]
IN_FILE = ["what does {name} in `{path}` do?", "explain {name} from `{path}`",
           "can you read {name} in `{path}` and tell me what it does?"]
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
    name = code(fn.name) if rng.random() < 0.85 else fn.name
    named_file = rng.random() < 0.35
    request = rng.choice(IN_FILE if named_file else REQUESTS).format(name=name, path=rel)

    def script(ep: Episode) -> None:
        ep.user(request)
        if not named_file:
            expect_hit(grep_definition(ep, fn.name), rel, fn.lineno)
        read_lines(ep, rel, fn.lineno, fn.n_lines)
        ep.say(summary(fn, ep.rng))
        ep.end()

    return Task(NAME, spec, script, f.key)


def summary(fn, rng: random.Random) -> str:
    desc = doc_sentence(fn)
    found = facts(fn, rng)
    if desc:
        first = rng.choice(OPENERS).format(name=code(fn.name), rest=desc.removeprefix("it "))
    elif found:
        first = f"{code(fn.name)} has no docstring, but from the code: {found.pop(0)}."
    else:
        raise Skip(f"nothing to say about {fn.name}")
    rest = " ".join(s + "." for s in found)
    if fn.cls and rng.random() < 0.5:
        rest += f" it's a method of {code(fn.cls)}."
    return (first + " " + rest).strip()
