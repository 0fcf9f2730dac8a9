"""What is a setting set to: Grep for its assignment -> (Read around it) -> the value and where it is set.
Module constants of real files (numbers and short strings). The agent eval's `answer` kind asks exactly
this, and no other family taught it: the model shipped on 2026-12-04 grepped `def set` for "what is
SCALE_FACTOR set to" (training/LOG.md)."""
import random
import re

from training.synth import checks
from training.synth.episode import Episode, Skip
from training.synth.tasks import Task, ask, code, expect_hit, pick_file, project, read_lines

NAME = "values"
OPENERS = ["let me find where `{n}` is set", "grepping for `{n}`", "looking up `{n}`", "searching for `{n} =`"]


def make(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: bool(f.info.constants))
    if f is None:
        return None
    c = rng.choice(f.info.constants)
    line = f.info.line(c.lineno)
    m = re.match(rf"^{c.name}\s*(:\s*[\w.\[\], ]+)?=\s*(.+?)\s*(#.*)?$", line)
    if m is None or f.text.count(line) != 1 or len(m.group(2)) > 40:
        return None
    value = m.group(2)  # as written in the file: 0x10, 1_000, 'utf-8'
    spec, rel = project(f, files, rng), f.rel
    tags = {}
    request = ask("constant_value", rng, tags, name=c.name, kind="constant")
    number = isinstance(c.value, (int, float))
    if number and value != repr(c.value):
        return None  # 0x10 or 1_000: the checker compares numbers as the answer writes them

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(OPENERS, n=c.name))
        res = ep.call("Grep", pattern=rf"^{c.name}\s*[:=]")
        hits = [(p, int(n)) for p, n in re.findall(r"^(.+?):(\d+):", res.output, re.M)]
        expect_hit(hits, rel, c.lineno)
        if len(hits) != 1:
            raise Skip("set in several files")
        if ep.rng.random() < 0.3:
            read_lines(ep, rel, max(1, c.lineno - 2), 5)
        answer = ep.rng.choice([f"{code(c.name)} is {value}, set in `{rel}` at line {c.lineno}.",
                                f"`{rel}:{c.lineno}` sets {code(c.name)} = {value}.",
                                f"it's {value} (`{rel}`, line {c.lineno}).",
                                f"{value}. that's line {c.lineno} of `{rel}`."])
        # the seeded fault points at a line no tool result showed (the critic checks lines, not values)
        ep.say(answer, hallucinate=answer.replace(f"{c.lineno}", f"{c.lineno + ep.frng.randint(11, 40)}"))
        ep.end()

    told = checks.answer_has(numbers=(c.value,)) if number else checks.answer_has(str(c.value))
    return Task(NAME, spec, script, f.key, allowed_paths=[], faults=("hallucinate",), tags=tags,
                check=checks.all_of(checks.nothing_changed(spec.files), told))
