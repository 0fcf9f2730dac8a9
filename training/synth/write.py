"""Write a function from its signature and docstring: fill in a stub (Read -> Edit), or create a new
file holding it (Edit with an empty old_string); sometimes check it with Bash."""
import random
import re

from training.synth import voice
from training.synth.episode import Episode, Skip
from training.synth.probe import probe
from training.synth.sources import module_file_name
from training.synth.tasks import (Task, ask, code, doc_sentence, grep_in_file, pick_file, pick_function, project, sig,
                                  small_project)
from training.synth.voice import first_sentence, soften_case

NAME = "write"
STUB_DONE = ["{done}: {name} is implemented.", "{done}, {name} has a body now.", "{done}! {name} is filled in."]
CREATE_DONE = ["{done}: `{path}` has {name}.", "{done}, created `{path}` with {name} in it.",
               "{done}! {name} lives in `{path}` now."]


def stubbable(g) -> bool:
    return bool(g.doc_end) and g.body_start > g.doc_end and 2 <= g.end_lineno - g.body_start + 1 <= 18 \
        and g.def_end < g.doc_end


def make(files, rng: random.Random) -> Task | None:
    return make_stub(files, rng) if rng.random() < 0.6 else make_create(files, rng)


def make_stub(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(stubbable(g) for g in f.info.functions))
    fn = pick_function(f, rng, stubbable) if f else None
    if fn is None:
        return None
    info, rel = f.info, f.rel
    body = info.segment(fn.body_start, fn.end_lineno)
    indent = re.match(r"\s*", info.line(fn.body_start)).group(0)
    if f.text.count(body) != 1 or not indent:
        return None
    stub_line = f"{indent}raise NotImplementedError"
    spec = project(f, files, rng)
    spec.plant(rel, body, stub_line + "\n")
    head = info.segment(fn.lineno, fn.body_start - 1)          # def ... docstring
    old = head + stub_line
    new = info.segment(fn.lineno, fn.end_lineno).rstrip("\n")
    if spec.text(rel).count(old) != 1:
        return None
    stub_len = fn.body_start - fn.lineno + 1
    name = code(fn.name)
    tags = {"variant": "stub"}
    request = ask("stub", rng, tags, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls, file=rel)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_in_file(ep, fn.name, rel, fn.lineno)
        ep.say(ep.pick(["let me read the stub", "reading it first", "let me look at the docstring"]))
        ep.call("Read", path=rel, offset=str(fn.lineno), limit=str(stub_len))
        ep.say(ep.pick(voice.EDIT_NOTES, path=rel))
        ep.call("Edit", path=rel, old_string=old, new_string=new)
        checked = ep.rng.random() < 0.4
        if checked:
            ep.say(ep.pick(["quick syntax check", "let me make sure it compiles"]))
            ep.call("Bash", command=f"python -m py_compile {rel} && echo ok")
        done = ep.rng.choice(STUB_DONE).format(done=ep.rng.choice(voice.DONE), name=name)
        desc = doc_sentence(fn)
        ep.say(done + (f" {desc}." if desc else "") + (" it compiles fine." if checked else ""))
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)


def creatable(g) -> bool:
    return g.self_contained and bool(first_sentence(g.doc)) and g.n_lines <= 22 and not g.is_async


def make_create(files, rng: random.Random) -> Task | None:
    f = pick_file(files, rng, lambda f: any(creatable(g) for g in f.info.functions))
    fn = pick_function(f, rng, creatable) if f else None
    if fn is None:
        return None
    source = f.info.segment(fn.lineno, fn.end_lineno)
    spec = small_project(files, rng)
    rel = module_file_name(fn.name.strip("_"))
    if rel in spec.files:
        return None
    what = soften_case(first_sentence(fn.doc))
    what = what[0].lower() + what[1:]
    desc = doc_sentence(fn)  # 'it returns ...'
    what3 = desc.removeprefix("it ") if desc else what
    params = [p.name for p in fn.params if p.default is None and p.kind == "positional"]
    signature = sig(fn, f.info)
    tags = {"variant": "create"}
    request = ask("create_function", rng, tags, file=rel, sig=signature, what=what3, task=what)
    # A run to show it works, with a real result (probed in the sandbox), about a third of the time.
    probes = []
    if params and rng.random() < 0.35:
        probes, _ = probe(source, fn.name, params, random.Random(rng.random()), with_mutants=False)
    example = next((p for p in probes if "\n" not in p.printed and p.printed.strip()), None)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["writing it", "creating the file", "here it comes", "on it"]))
        ep.call("Edit", path=rel, old_string="", new_string=source)
        done = ep.rng.choice(CREATE_DONE).format(done=ep.rng.choice(voice.DONE), path=rel, name=code(fn.name))
        if example is not None:
            call = f"{fn.name}({example.args})"
            ep.say(ep.pick(["let me try it", "quick run to show it works", "testing it once"]))
            out = ep.call("Bash", command=f'python -c "from {rel[:-3]} import {fn.name}; print({call})"').output
            if out != f"{example.printed}\n[exit code 0]":
                raise Skip("the example run printed something else")
            done += f" `{call}` gives `{example.printed}`."
        ep.say(done)
        ep.end()

    return Task(NAME, spec, script, f.key, allowed_paths=[rel], tags=tags)
