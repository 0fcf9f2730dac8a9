"""Locate a definition: Grep -> (Read) -> answer with the path and line."""
import random

from training.synth.episode import Episode, Skip
from training.synth.tasks import Task, ask, code, doc_sentence, expect_hit, grep_definition, pick_file, project, read_lines

NAME = "locate"
ANSWERS = ["it's in `{path}`, line {line} :)", "found it: `{path}:{line}`.",
           "{name} is defined in `{path}` at line {line}.", "there it is, `{path}` line {line}.",
           "`{path}:{line}` is where {name} lives."]
MULTI = ["there are {n} definitions: {where}.", "{name} is defined {n} times: {where}."]


def make(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.functions or f.info.classes))
    if f is None:
        return None
    kind = "class" if f.info.classes and rng.random() < 0.25 else "def"
    if kind == "class":
        name = rng.choice(sorted(f.info.classes))
        line, fn = f.info.classes[name], None
    else:
        fn = rng.choice([g for g in f.info.functions if not g.name.startswith("__")] or [None])
        if fn is None:
            return None
        name, line = fn.name, fn.lineno
    spec = project(f, files, rng)
    rel = f.rel
    tags = {}
    request = ask("locate", rng, tags, name=name, kind=kind if kind == "class" else ("method" if fn.cls else "function"),
                  cls=fn.cls if fn is not None else None)

    def script(ep: Episode) -> None:
        ep.user(request)
        hits = grep_definition(ep, name, kind)
        expect_hit(hits, rel, line)
        if len(hits) > 4:
            raise Skip("too many definitions to list")
        desc = doc_sentence(fn) if fn is not None else ""
        read = len(hits) == 1 and ep.rng.random() < 0.5
        if read:
            read_lines(ep, rel, line, min(10, (fn.n_lines if fn else 10)))
        if len(hits) == 1:
            answer = ep.rng.choice(ANSWERS).format(path=rel, line=line, name=code(name))
            # a line the Read window (at most 10 lines from `line`) did not show
            wrong = answer.replace(f"{line}", f"{line + ep.frng.randint(11, 40)}")
        else:
            where = ", ".join(f"`{p}:{n}`" for p, n in hits)
            answer = ep.rng.choice(MULTI).format(n=len(hits), where=where, name=code(name))
            wrong = f"it's in `{rel}`, line {line + ep.frng.randint(11, 40)}."
        if desc and read and ep.rng.random() < 0.7:  # say what it does only after reading it
            answer += f" {desc}."
        ep.say(answer, hallucinate=wrong)
        ep.end()

    return Task(NAME, spec, script, f.key, faults=("hallucinate",), tags=tags)
