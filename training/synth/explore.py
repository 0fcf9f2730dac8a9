"""List and explore: `ls -F` / `find` to see what is there, and for "what does this project do?" the
README (or, without one, the modules' own docstrings) and a two-sentence summary of what was read.

The workspace is a real package: a source file and its siblings from the same directory of the pool,
plus a README written from their docstrings (textfiles.readme) and sometimes a notes or config file."""
import random
import re

from training.synth import checks, textfiles
from training.synth.episode import Episode, Skip
from training.synth.sources import WorkspaceSpec
from training.synth.tasks import Task, ask

NAME = "explore"
STOP = set("the and for with from that this into over when which what their about module modules "
           "utilities functions function support classes class helpers helper python".split())


def make(files, rng: random.Random) -> Task | None:
    return rng.choice([make_list, make_list_dir, make_overview, make_overview])(files, rng)


def package(files, rng: random.Random, k: int = 3) -> WorkspaceSpec | None:
    """A file and up to k-1 siblings from its directory, each at its path; None when it has no sibling."""
    f = rng.choice(files)
    parent = f.key.rsplit("/", 1)[0] if "/" in f.key else ""
    sibs = [g for g in files if g.key != f.key and (g.key.rsplit("/", 1)[0] if "/" in g.key else "") == parent]
    if not sibs:
        return None
    spec = WorkspaceSpec()
    spec.add(f)
    for g in rng.sample(sibs, min(k - 1, len(sibs))):
        if g.rel not in spec.files:
            spec.add(g)
    return spec


def listing(entries: list[str], limit: int = 8) -> str:
    shown = [f"`{e}`" for e in entries[:limit]]
    more = len(entries) - len(shown)
    if more:
        shown.append(f"{more} more")
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _with_extras(spec: WorkspaceSpec, rng: random.Random, readme_p: float) -> tuple[str | None, str]:
    """Adds a README (with probability readme_p) and maybe a text file; returns (readme path, summary)."""
    project = next(iter(spec.files)).split("/")[0].removesuffix(".py")
    rd = textfiles.readme(project, dict(spec.files), rng) if rng.random() < readme_p else None
    if rd is not None:
        spec.plant(rd.rel, "", rd.text)
    if rng.random() < 0.4:
        tf = textfiles.text_file(rng)
        if tf.rel not in spec.files:
            spec.plant(tf.rel, "", tf.text)
    return (rd.rel, rd.summary) if rd else (None, "")


def top_level(spec: WorkspaceSpec) -> list[str]:
    """What `ls -F` prints at the top of the workspace: files, and directories with a slash, sorted as ls does."""
    names = {p.split("/")[0] + ("/" if "/" in p else "") for p in spec.files}
    return sorted(names, key=lambda n: n.rstrip("/"))


def make_list(files, rng: random.Random) -> Task | None:
    spec = package(files, rng, k=rng.randint(2, 4))
    if spec is None:
        return None
    _with_extras(spec, rng, 0.5)
    tags = {"variant": "list"}
    request = ask("list_dir", rng, tags)
    use_find = rng.random() < 0.4

    def script(ep: Episode) -> None:
        ep.user(request)
        if use_find:
            ep.say(ep.pick(["a `find` will show everything", "let me list every file", "listing them with find"]))
            out = ep.call("Bash", command="find . -type f | sort").output
            entries = [line.removeprefix("./") for line in out.splitlines() if line.startswith("./")]
            ep.say(f"{len(entries)} files: {listing(entries)}.")
        else:
            ep.say(ep.pick(["let me look", "`ls` it is", "listing the top level", "quick `ls -F`"]))
            out = ep.call("Bash", command="ls -F").output
            entries = [line for line in out.splitlines() if line and not line.startswith("[")]
            dirs = [e for e in entries if e.endswith("/")]
            plain = [e for e in entries if not e.endswith("/")]
            parts = []
            if plain:
                parts.append(listing(plain))
            if dirs:
                parts.append(("the folder " if len(dirs) == 1 else "the folders ") + listing(dirs))
            ep.say(ep.rng.choice(["at the top level: ", "here: ", "there's "]) + " and ".join(parts) + ".")
        ep.end()

    names = {p.split("/")[-1] for p in spec.files} | {e.rstrip("/") for e in top_level(spec)}

    def names_some(ws, answer, calls):
        ok = any(n in answer for n in names)
        return checks.Outcome(ok, "listed what is there" if ok else "the answer names none of the files")

    check = checks.all_of(checks.nothing_changed(spec.files), checks.ran(r"\b(ls|find|tree)\b", "listed the files"),
                          names_some)
    return Task(NAME, spec, script, next(iter(spec.sources.values())), allowed_paths=[], tags=tags, check=check)


def make_list_dir(files, rng: random.Random) -> Task | None:
    spec = package(files, rng, k=rng.randint(2, 4))
    if spec is None:
        return None
    first = next(iter(spec.files))
    if "/" not in first:
        return None
    d = first.split("/")[0]
    _with_extras(spec, rng, 0.3)
    tags = {"variant": "list_dir"}
    request = ask("list_dir", rng, tags, mention=("dir",), dir=rng.choice([d, d + "/"]))
    inside = sorted(p.split("/", 1)[1] for p in spec.files if p.startswith(d + "/"))

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me list `{d}`", "`ls` on `{d}`", "looking inside `{d}`"], d=d))
        out = ep.call("Bash", command=f"ls -F {d}").output
        entries = [line for line in out.splitlines() if line and not line.startswith("[")]
        if sorted(entries) != inside:
            raise Skip("ls showed something else")
        ep.say(ep.rng.choice([f"`{d}` holds {listing(entries)}.", f"{len(entries)} in there: {listing(entries)}."]))
        ep.end()

    check = checks.all_of(checks.nothing_changed(spec.files), checks.ran(r"\b(ls|find|tree)\b", "listed the folder"),
                          checks.answer_has(inside[0].split(".")[0]))
    return Task(NAME, spec, script, next(iter(spec.sources.values())), allowed_paths=[], tags=tags, check=check)


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in STOP]


def make_overview(files, rng: random.Random) -> Task | None:
    spec = package(files, rng, k=rng.randint(2, 3))
    if spec is None:
        return None
    modules = {rel: text for rel, text in spec.files.items()}
    described = {rel: textfiles.module_summary(t) for rel, t in modules.items()}
    described = {rel: s for rel, s in described.items() if s}
    if not described:
        return None
    readme, summary = _with_extras(spec, rng, 0.75)
    tags = {"variant": "overview_readme" if readme else "overview_code"}
    top = next(iter(modules)).split("/")[0] if "/" in next(iter(modules)) else None
    about = {"dir": top} if top and rng.random() < 0.65 else {}
    request = ask("explore", rng, tags, mention=tuple(about), **about)
    py = sorted(modules)
    first_rel, first_what = next(iter(described.items()))

    def script(ep: Episode) -> None:
        ep.user(request)
        ep.say(ep.pick(["let me see what's here", "first, the lay of the land", "let me look around",
                        "starting with a listing"]))
        out = ep.call("Bash", command="find . -type f | sort").output
        if readme:
            ep.say(ep.pick(["there's a README, reading it", "the README should say", "reading `{r}`"], r=readme))
            ep.call("Read", path=readme)
            ep.say(f"{summary}. the code is {listing(py, 4)}.")
        else:
            ep.say(ep.pick(["no readme, so let me read the top of `{p}`", "no readme here; checking `{p}`'s docstring",
                            "no docs, so the code it is: reading `{p}`"], p=first_rel))
            ep.call("Read", path=first_rel, limit=str(_docstring_lines(modules[first_rel])))
            others = len(py) - 1
            ep.say(f"there's no readme, but `{first_rel}` says it's {first_what.rstrip('.')}."
                   + (f" besides it there {'is' if others == 1 else 'are'} {others} more module"
                      f"{'s' * (others != 1)}: {listing([p for p in py if p != first_rel], 4)}." if others else ""))
        if "./" not in out:
            raise Skip("find showed nothing")
        ep.end()

    words = content_words(first_what)
    if not words:
        return None
    base = first_rel.split("/")[-1]

    def mentions(ws, answer, calls):
        low = answer.lower()
        ok = any(w in low for w in words) and any(p.split("/")[-1] in answer for p in py)
        return checks.Outcome(ok, "summarised the project" if ok else f"the answer does not say what the code "
                              f"is about ({first_what!r}) or name a module like {base}")

    check = checks.all_of(checks.nothing_changed(spec.files), mentions)
    return Task(NAME, spec, script, next(iter(spec.sources.values())), allowed_paths=[], tags=tags, check=check)


def _docstring_lines(text: str) -> int:
    from training.synth.read import docstring_end
    return max(3, min(25, docstring_end(text) + 1))
