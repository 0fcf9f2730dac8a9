"""Create a small program from a description: Edit with an empty old_string writes the file, Bash runs
it, the answer says what it printed. Or in two turns: write it, then "now run it". The programs and their
exact outputs come from programs.py; the checker runs the file and compares."""
import random

from training.synth import checks, programs, voice
from training.synth.episode import Episode, Skip
from training.synth.tasks import Task, ask, small_project

NAME = "create"
WRITE_NOTES = ["writing it", "creating `{f}`", "here it comes", "on it, creating `{f}`", "writing `{f}`",
               "one new file coming up"]


def make(files, rng: random.Random) -> Task | None:
    return make_program(files, rng, then_run=rng.random() < 0.3)


def shown_output(out: str) -> str:
    """How the answer quotes a program's output: inline when short, else its first and last lines."""
    lines = out.splitlines()
    if len(lines) == 1 and len(out) <= 70:
        return f"it prints `{out}`"
    if len(lines) <= 3 and len(out) <= 70:
        return "it prints " + ", ".join(f"`{x}`" for x in lines) + " (one per line)"
    return f"it prints {len(lines)} lines, from `{lines[0][:40]}` to `{lines[-1][:40]}`"


def make_program(files, rng: random.Random, then_run: bool = False) -> Task | None:
    prog = programs.program(rng)
    spec = small_project(files, rng, extra=rng.randint(0, 1))
    named = rng.random() < 0.6
    rel = rng.choice([f"{prog.stem}.py", f"{prog.stem}.py", f"my_{prog.stem}.py", f"{prog.stem}_demo.py"])
    if rel in spec.files or any(p in spec.files for p in prog.data):
        return None
    for p, text in prog.data.items():
        spec.plant(p, "", text)
    tags = {}
    request = ask("create_program", rng, tags, what=prog.what, task=prog.task, file=rel if named else None)
    named = rel in request  # a template may leave the file out: then the teacher names it
    tags["variant"] = "then_run" if then_run else ("named" if named else "unnamed")
    follow = ask("then_run", rng, tags) if then_run else None
    cmd = f"python {rel}"

    def run_and_report(ep: Episode, done: str) -> None:
        ep.say(ep.pick(["let me run it", "quick run to check", "running it", "testing it once"]))
        out = ep.call("Bash", command=cmd).output
        if out != f"{prog.expected}\n[exit code 0]":
            raise Skip("the program printed something else")
        ep.say(f"{done}{shown_output(prog.expected)}.")

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(WRITE_NOTES, f=rel) if named else ep.pick(["i'll call it `{f}`", "putting it in `{f}`",
                                                                  "writing it to `{f}`"], f=rel))
        ep.call("Edit", path=rel, old_string="", new_string=prog.source)
        if then_run:
            ep.say(ep.rng.choice([f"created `{rel}`. want me to run it?", f"{ep.rng.choice(voice.DONE)}, `{rel}` is "
                                  "written. say the word and i'll run it.", f"`{rel}` is ready."]))
            ep.end()
            ep.user(follow)
            run_and_report(ep, ep.rng.choice(["works: ", "ran fine, ", "there we go, "]))
        else:
            run_and_report(ep, ep.rng.choice([f"created `{rel}`; ", f"{ep.rng.choice(voice.DONE)}, `{rel}` runs and ",
                                              f"`{rel}` is in place: "]))
        ep.end()

    def new_file_prints(ws, answer, calls):
        if named:
            return checks.prints(rel, prog.expected)(ws, answer, calls)
        new = [p for p in checks.snapshot(ws) if p.endswith(".py") and p not in spec.files]
        for p in new:
            if checks.prints(p, prog.expected)(ws, answer, calls).success:
                return checks.Outcome(True, f"{p} prints what was asked")
        return checks.Outcome(False, f"no new .py file prints the expected output (new: {new})")

    def only_new(ws, answer, calls):
        now = checks.snapshot(ws)
        touched = [p for p in spec.files if now.get(p) != spec.files[p]]
        if touched:
            return checks.Outcome(False, f"changed files the task is not about: {', '.join(touched)}")
        return checks.Outcome(True, "")

    check = checks.all_of(only_new, new_file_prints,
                          checks.ran(r"python", "ran the program") if then_run else checks.answer_given())
    return Task(NAME, spec, script, rel, turns=2 if then_run else 1, allowed_paths=[rel], tags=tags, check=check)
