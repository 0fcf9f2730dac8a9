"""Fix a planted bug: the user reports a wrong result; Read -> Edit -> confirm with Bash by running it.

The bug is a one-token mutation of a real corpus function (training/synth/probe.py) that changes its
result on a probed input, so the report, the fix and the confirming run are all real."""
import random
import re
from pathlib import Path

from training.synth import voice
from training.synth.episode import Episode, Skip
from training.synth.probe import probe
from training.synth.sources import module_file_name
from training.synth.tasks import Task, ask, code, grep_unique_definition, pick_file, pick_function, small_project

NAME = "bugfix"
WHAT = re.compile(r"`(.+)` became `(.+)`")


def required(g) -> list[str]:
    return [p.name for p in g.params if p.kind == "positional" and p.default is None]


def probeable(g) -> bool:
    return g.self_contained and not g.is_async and not g.has_yield and g.n_lines <= 25 and 1 <= len(required(g)) <= 3


def got_text(outcome: str, rng: random.Random) -> str:
    """'returns `5`' or 'returns 5' (people quote results about half the time), 'raises `KeyError`'."""
    q = "`" if rng.random() < 0.5 else ""
    if outcome.startswith("raises "):
        return f"raises {q}{outcome.removeprefix('raises ')}{q}"
    return rng.choice(["returns", "gives", "returns", "gives me"]) + f" {q}{outcome}{q}"


def probed_function(files, rng: random.Random, with_mutants: bool = True):
    """A self-contained function run on generated arguments: (file, function, its source, probes (calls
    and what they printed), mutants (small planted bugs)), or None."""
    # one file in ten has a probeable function (stdlib): 40 draws find one 99% of the time, 12 did 74%
    f = pick_file(files, rng, lambda f: any(probeable(g) for g in f.info.functions), tries=40)
    fn = pick_function(f, rng, probeable) if f else None
    if fn is None:
        return None
    source = f.info.segment(fn.lineno, fn.end_lineno)
    probes, mutants = probe(source, fn.name, required(fn), random.Random(rng.random()), with_mutants=with_mutants)
    return f, fn, source, probes, mutants


def make(files, rng: random.Random) -> Task | None:
    found = probed_function(files, rng)
    if found is None:
        return None
    f, fn, source, probes, mutants = found
    mutants = [m for m in mutants if source.count(m.new) == 0 and source.count(m.old) == 1
               and "\n" not in probes[m.probe].printed]
    if not mutants:
        return None
    m = rng.choice(mutants)
    p = probes[m.probe]
    spec = small_project(files, rng)
    rel = module_file_name(Path(f.rel).stem)
    if rel in spec.files:
        return None
    spec.plant(rel, "", source)
    spec.plant(rel, m.old, m.new)
    fix_from, fix_to = WHAT.match(m.what).group(2), WHAT.match(m.what).group(1)
    call = f"{fn.name}({p.args})"
    tags = {}
    request = ask("bugfix", rng, tags, call=call, want=p.result, got=got_text(m.outcome, rng), name=fn.name,
                  file=rel if rng.random() < 0.6 else None)
    n_lines = source.count("\n")

    def script(ep: Episode) -> None:
        ep.user(request)
        if rel not in request:  # the user did not say where it is
            grep_unique_definition(ep, fn.name, rel, 1)
        ep.say(ep.pick(["let me read it", "let me look at {n}", "reading `{p}`"], n=code(fn.name), p=rel))
        ep.call("Read", path=rel, offset="1", limit=str(n_lines))
        ep.say(ep.rng.choice([f"found it: line {m.line} uses {code(fix_from)} where it should be {code(fix_to)}.",
                              f"line {m.line} has {code(fix_from)}, which should be {code(fix_to)}.",
                              f"there it is, {code(fix_from)} on line {m.line} should be {code(fix_to)}."]))
        ep.say(ep.pick(["fixing it", "changing it back", "editing that line"]))
        ep.call("Edit", path=rel, old_string=m.new, new_string=m.old)
        ep.say(ep.pick(["let me check", "quick run to confirm", "let me run it to be sure"]))
        out = ep.call("Bash", command=f'python -c "from {rel[:-3]} import {fn.name}; print({call})"').output
        if out != f"{p.printed}\n[exit code 0]":
            raise Skip("the confirming run printed something else")
        ep.say(ep.rng.choice([f"fixed :) {code(call)} returns {code(p.printed)} now.",
                              f"{ep.rng.choice(voice.DONE)}, {code(call)} gives {code(p.printed)} as expected.",
                              f"works now: {code(call)} prints {code(p.printed)}."]))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)
