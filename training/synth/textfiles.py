"""Small non-code files a project has besides its Python (to-do lists, meeting notes, requirements, configs,
CSV data, a changelog, a log, a README), generated with what the assistant can truthfully say about them after reading.

    text_file(rng) -> TextFile(rel, text, summary)      summary: lowercase, names in backticks
    readme(project, modules, rng) -> TextFile           a README built from real modules' docstrings
"""
import random
import re
from dataclasses import dataclass

from training.synth.voice import first_sentence, soften_case

TODO_ITEMS = ["fix the login timeout", "write docs for the cli", "add a --verbose flag", "clean up the old config loader",
              "speed up the csv export", "handle empty input files", "remove the python 3.8 shims",
              "rename the helpers module", "add tests for the parser", "ask sam about the cache size",
              "bump the version before release", "check the error messages", "support windows paths",
              "split the big utils file", "profile the startup time", "log the retry count"]
PACKAGES = [("requests", "2.31.0"), ("numpy", "1.26.4"), ("click", "8.1.7"), ("pyyaml", "6.0.1"),
            ("rich", "13.7.1"), ("attrs", "23.2.0"), ("tqdm", "4.66.2"), ("pytest", "8.1.1"), ("jinja2", "3.1.3"),
            ("httpx", "0.27.0"), ("pydantic", "2.6.4"), ("toml", "0.10.2")]
SECTIONS = {"server": [("host", ["localhost", "0.0.0.0", "127.0.0.1"]), ("port", ["8080", "5000", "8000"]),
                       ("workers", ["2", "4", "8"])],
            "logging": [("level", ["info", "debug", "warning"]), ("file", ["app.log", "logs/run.log"])],
            "cache": [("size", ["128", "512", "1024"]), ("ttl", ["60", "300", "3600"])],
            "database": [("url", ["sqlite:///app.db", "sqlite:///data.db"]), ("timeout", ["5", "30"])]}
COLUMNS = {"name": ["ada", "bo", "cy", "dee", "eli", "fay", "gus", "hal"], "age": [str(a) for a in range(19, 70, 7)],
           "city": ["oslo", "lima", "pune", "kyiv", "nice", "cork", "kobe"],
           "score": [str(s) for s in range(40, 100, 9)], "team": ["red", "blue", "green"]}
NOTE_NAMES = ["notes.txt", "TODO.md", "todo.txt", "NOTES.md"]


@dataclass(frozen=True)
class TextFile:
    rel: str
    text: str
    summary: str   # what reading it shows, as the assistant would say it


def _ticks(names: list[str]) -> str:
    shown = [f"`{n}`" for n in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def todo_file(rng: random.Random) -> TextFile:
    items = rng.sample(TODO_ITEMS, rng.randint(3, 7))
    bullet = rng.choice(["- ", "* ", "[ ] "])
    title = rng.choice(["", "# todo\n\n", "things to do:\n", "# notes\n\n"])
    rel = rng.choice(NOTE_NAMES)
    text = title + "".join(bullet + i + "\n" for i in items)
    return TextFile(rel, text, f"a to-do list of {len(items)} items, starting with \"{items[0]}\" and ending "
                               f"with \"{items[-1]}\"")


def requirements(rng: random.Random) -> TextFile:
    pkgs = rng.sample(PACKAGES, rng.randint(2, 6))
    op = rng.choice(["==", ">="])
    text = "".join(f"{p}{op}{v}\n" for p, v in pkgs)
    how = "pinned to exact versions" if op == "==" else "with minimum versions"
    return TextFile("requirements.txt", text, f"{len(pkgs)} dependencies {how}: {_ticks([p for p, _ in pkgs])}")


def config(rng: random.Random) -> TextFile:
    names = rng.sample(sorted(SECTIONS), rng.randint(1, 3))
    lines, parts = [], []
    for s in names:
        keys = rng.sample(SECTIONS[s], rng.randint(1, len(SECTIONS[s])))
        lines += [f"[{s}]"] + [f"{k} = {rng.choice(vs)}" for k, vs in keys] + [""]
        parts.append(f"`[{s}]` ({_ticks([k for k, _ in keys])})")
    rel = rng.choice(["config.ini", "settings.ini", "setup.cfg", "app.cfg"])
    n = len(names)
    return TextFile(rel, "\n".join(lines), f"{'one section' if n == 1 else f'{n} sections'}: " + ", ".join(parts))


def csv_file(rng: random.Random) -> TextFile:
    cols = rng.sample(sorted(COLUMNS), rng.randint(2, 4))
    rows = rng.randint(3, 8)
    body = [",".join(cols)] + [",".join(rng.choice(COLUMNS[c]) for c in cols) for _ in range(rows)]
    rel = rng.choice(["data.csv", "people.csv", "scores.csv", "sample.csv"])
    return TextFile(rel, "\n".join(body) + "\n", f"a CSV with the columns {_ticks(cols)} and {rows} rows of data")


def changelog(rng: random.Random) -> TextFile:
    major, minor = rng.randint(0, 3), rng.randint(1, 9)
    versions = [f"{major}.{m}.0" for m in range(minor, max(0, minor - rng.randint(2, 4)), -1)]
    lines = ["# changelog", ""]
    for v in versions:
        lines += [f"## {v}", "", f"- {rng.choice(TODO_ITEMS).replace('add ', 'added ').replace('fix ', 'fixed ')}", ""]
    return TextFile(rng.choice(["CHANGELOG.md", "CHANGES.md"]), "\n".join(lines),
                    f"the changelog, {len(versions)} releases from {versions[-1]} up to the latest, {versions[0]}")


NOTE_POINTS = ["ship the csv exporter before friday", "ask dana about the retry limit", "the demo moved to tuesday",
               "nobody owns the nightly build yet", "keep the old api until june", "sam reviews the parser change",
               "the staging db is full again", "drop python 3.8 in the next release", "write up the outage",
               "move the docs to the wiki", "budget for two more runners", "try the new linter on one repo"]
LOG_EVENTS = [("INFO", "server started on port 8080"), ("INFO", "loaded 12 plugins"), ("WARNING", "cache is 90% full"),
              ("ERROR", "could not connect to db: timeout"), ("INFO", "request took 1.2 s"),
              ("ERROR", "config file missing: settings.ini"), ("WARNING", "retrying upload (2 of 3)"),
              ("INFO", "shutting down")]


def meeting_notes(rng: random.Random) -> TextFile:
    # the file a new user asked about first (issue 15): "read the file notes.txt"
    points = rng.sample(NOTE_POINTS, rng.randint(2, 5))
    date = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    title = rng.choice([f"meeting notes {date}", f"notes from {date}", f"# standup {date}", f"sync {date}:"])
    text = title + "\n" + "".join(f"{rng.choice(['-', '*'])} {p}\n" for p in points)
    return TextFile(rng.choice(["notes.txt", "meeting.txt", "NOTES.md", "minutes.md"]), text,
                    f"notes from {date} with {len(points)} points, from \"{points[0]}\" to \"{points[-1]}\"")


def log_file(rng: random.Random) -> TextFile:
    events = [rng.choice(LOG_EVENTS) for _ in range(rng.randint(3, 8))]
    day = rng.randint(1, 28)
    lines = [f"2026-11-{day:02d} 10:{i:02d}:00 {level} {msg}" for i, (level, msg) in enumerate(events)]
    errors = [m for lv, m in events if lv == "ERROR"]
    what = (f"{len(errors)} error{'s' * (len(errors) != 1)}, the last \"{errors[-1]}\"" if errors else "no errors")
    return TextFile(rng.choice(["app.log", "server.log", "run.log"]), "\n".join(lines) + "\n",
                    f"a log of {len(lines)} lines with {what}")


MAKERS = [todo_file, requirements, config, csv_file, changelog, meeting_notes, log_file]


def text_file(rng: random.Random) -> TextFile:
    return rng.choice(MAKERS)(rng)


def module_summary(text: str) -> str:
    """The first sentence of a module's docstring, lowercased where it is ordinary prose ('' if none)."""
    import ast
    try:
        doc = ast.get_docstring(ast.parse(text)) or ""
    except (SyntaxError, ValueError):
        return ""
    s = first_sentence(doc)
    if re.search(r"[A-Z]\w*-\w", s):
        return ""  # "WSGI-related": the critic's lowercase rule cannot match it to the file it came from
    if s and s.split()[0][1:].islower():  # "Utilities for ..." -> "utilities for ...", but "JSON ..." stays
        s = s[:1].lower() + s[1:]
    return soften_case(s) if s else ""


def readme(project: str, modules: dict[str, str], rng: random.Random) -> TextFile | None:
    """A README for a workspace of real modules: a title, what it is (from the modules' own docstrings),
    and what is where. None when no module says what it does."""
    described = [(rel, module_summary(text)) for rel, text in modules.items()]
    described = [(rel, s) for rel, s in described if s]
    if not described:
        return None
    rel0, what = described[0]
    lines = [f"# {project}", "", f"{what[:1].upper() + what[1:]}.", ""]
    if len(described) > 1 or rng.random() < 0.5:
        lines += ["## layout", ""] + [f"- `{rel}`: {s}" for rel, s in described] + [""]
    summary = rng.choice([f"from the README: {what}", f"the README sums it up as \"{what}\"",
                          f"the README's one-liner is \"{what}\""])
    return TextFile(rng.choice(["README.md", "README.md", "README.txt", "README"]), "\n".join(lines), summary)
