"""Answers that need no tool: greetings, what nanocode is and can do, and questions about the conversation
so far ("which file was that?", "what did you change?") after a first turn that did real work. None of
these makes a call: the shipped model answered "what does this project do?" and "hi" alike with a Grep
(issue 15), because every conversation it had seen made one."""
import random

from training.synth import change, checks
from training.synth.episode import Episode
from training.synth.explain import explainable
from training.synth.locate import ANSWERS
from training.synth.tasks import Task, ask, code, grep_unique_definition, pick_file, pick_function, project, small_project

NAME = "chat"
REPLIES = {
    "greet": ["hey :) what are we working on?", "hi! what can i do for you in this repo?",
              "hello! point me at some code and i'll dig in.", "hey there. what's up?",
              "hi :) want me to look at something?", "morning! what shall we poke at?"],
    "capabilities": [
        "i can read files, search the code with Grep, edit files and run commands with Bash, all in this repo and "
        "always after you say yes. ask me where something is defined, what a function does, to rename or fix "
        "something, or to run the tests.",
        "a small coding helper: i find things (Grep), read them (Read), change them (Edit) and run commands (Bash), "
        "asking your permission before each call. try \"where is main defined?\" or \"run the tests\".",
        "reading, searching, editing and running things in this repository. every tool call waits for your ok, "
        "so nothing happens behind your back. what do you need?"],
    "can_edit": ["yes: i edit files with the Edit tool, one exact replacement at a time, and every edit waits for "
                 "your approval first.",
                 "i can, with the Edit tool. you see each change before it happens and can say no."],
    "can_run": ["yep, with the Bash tool: tests, scripts, any command. each one asks for your ok first, and it runs "
                "in a sandbox that can only write inside this repo.",
                "i can run commands through Bash, after you approve each one. it's sandboxed: writes stay in the "
                "workspace and there's no network."],
    "internet": ["no: my Bash runs in a sandbox without network, so no browsing, downloads or pip installs from "
                 "here. i can tell you the command to run yourself though.",
                 "nope, no network in my sandbox. i work with what's in this repo; for installs, i can tell you the "
                 "command to run."],
    "about_self": ["i'm nanocode, a small coding assistant that runs locally in your terminal. i read, search, edit "
                   "and run things in this repo, asking before each step.",
                   "nanocode: a small language model trained by its own little training stack, living in your "
                   "terminal to help with the code in this repo.",
                   "i'm nanocode. think of me as a friendly colleague for this repo: i find, read, change and run "
                   "things, with your ok each time."],
    "are_you_other": ["nope, i'm nanocode: a small model trained from scratch by this project, running on your "
                      "machine. what can i do for you?",
                      "no, i'm nanocode, a much smaller local model. i stick to the code in this repo."],
}
NO_TOOL_INTENTS = tuple(REPLIES)


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_smalltalk, make_smalltalk, make_located_then_ask, make_renamed_then_ask])(files, rng)


def make_smalltalk(files, rng: random.Random) -> Task | None:
    intent = rng.choice(["greet", "greet", "capabilities", "capabilities", "can_edit", "can_run", "internet",
                         "about_self", "about_self", "are_you_other"])
    spec = small_project(files, rng)
    tags = {"variant": intent}
    request = ask(intent, rng, tags)

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(REPLIES[intent]))
        ep.end()

    return Task(NAME, spec, script, next(iter(spec.sources.values()), ""), allowed_paths=[], tags=tags,
                check=checks.all_of(checks.no_calls(), checks.answer_given()))


def make_located_then_ask(files, rng: random.Random) -> Task | None:
    """Turn 1 finds a function; turn 2 asks for the file or the line again: answered from the history."""
    f = pick_file(files, rng, lambda f: any(explainable(g) for g in f.info.functions))
    fn = pick_function(f, rng, explainable) if f else None
    if fn is None:
        return None
    spec, rel = project(f, files, rng), f.rel
    which = rng.choice(["ask_which_file", "ask_which_line"])
    tags = {"variant": which}
    request = ask("locate", rng, tags, name=fn.name, kind="method" if fn.cls else "function", cls=fn.cls)
    follow = ask(which, rng, tags)

    def script(ep: Episode) -> None:
        ep.user(request)
        grep_unique_definition(ep, fn.name, rel, fn.lineno)
        ep.say(ep.rng.choice(ANSWERS).format(path=rel, line=fn.lineno, name=code(fn.name)))
        ep.end()
        ep.user(follow)
        if which == "ask_which_file":
            ep.say(ep.rng.choice([f"`{rel}` :)", f"it's in `{rel}`.", f"`{rel}`, line {fn.lineno}."]))
        else:
            ep.say(ep.rng.choice([f"line {fn.lineno} of `{rel}`.", f"{fn.lineno}.", f"line {fn.lineno}."]))
        ep.end()

    expected = checks.answer_has(rel.split("/")[-1]) if which == "ask_which_file" else \
        checks.answer_has(numbers=(fn.lineno,))
    return Task(NAME, spec, script, f.key, turns=2, allowed_paths=[], tags=tags,
                check=checks.all_of(checks.no_calls(), expected))


def make_renamed_then_ask(files, rng: random.Random) -> Task | None:
    """Turn 1 renames a function; turn 2 asks what changed or what it is called now."""
    f = pick_file(files, rng, lambda f: bool(f.info.functions))
    fn = pick_function(f, rng, lambda g: g.cls is None and len(g.name) >= 4) if f else None
    if fn is None:
        return None
    plan = change.rename_plan(f, fn.name, rng)
    if plan is None:
        return None
    new, count = plan
    spec, rel = project(f, files, rng), f.rel
    if not change.only_in(spec, rel, fn.name):
        return None
    which = rng.choice(["ask_what_changed", "ask_new_name"])
    tags = {"variant": which}
    request = ask("rename", rng, tags, name=fn.name, new=new, kind="function", file=rel)
    follow = ask(which, rng, tags)
    spots = f"{count} spots" if count > 1 else "one spot"

    def script(ep: Episode) -> None:
        ep.user(request)
        change.rename_steps(ep, fn.name, new, count, rel)
        ep.end()
        ep.user(follow)
        if which == "ask_what_changed":
            ep.say(ep.rng.choice([f"one Edit in `{rel}`: every {code(fn.name)} became {code(new)} ({spots}). "
                                  "nothing else changed.",
                                  f"i renamed {code(fn.name)} to {code(new)} in `{rel}`, {spots}. that's all."]))
        else:
            ep.say(ep.rng.choice([f"{code(new)} now.", f"it's {code(new)}.", f"{code(new)} (it was {code(fn.name)})."]))
        ep.end()

    expected = checks.answer_has(rel.split("/")[-1], new) if which == "ask_what_changed" else checks.answer_has(new)
    return Task(NAME, spec, script, f.key, turns=2, allowed_paths=[rel], tags=tags,
                check=checks.all_of(checks.no_calls(), expected))
