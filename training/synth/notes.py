"""Project notes (AGENTS.md / NANOCODE.md) for a share of the conversations, put where the agent puts them
(the head of the first user turn, nanocode/template.py): a model that never saw notes there is thrown off
by them (the one shipped on 2026-12-04 grepped for `sure` when a two-line AGENTS.md came first), and one
trained with them reads them by default (agent/setup.py, meta "project_notes"). The notes are about how
the project is kept, as real ones are, and never needed for the task, so the teacher's conduct is the same
with or without them."""
import random

from nanocode.template import notes_text

SHARE = 0.2  # of the conversations
TITLES = ["", "# AGENTS.md\n\n", "# notes for coding agents\n\n", "# contributing\n\n", "## conventions\n\n"]
RULES = ["use 4 spaces, never tabs", "keep functions short and give them docstrings",
         "run the tests before you commit", "the tests use the standard library's unittest",
         "do not edit files under `vendor/`", "python 3.11 or newer", "no new dependencies without asking",
         "type hints on public functions", "write commit messages in the imperative mood",
         "prefer pathlib over os.path", "keep lines under 100 characters", "log with the logging module, not print",
         "the main entry point is the cli module", "small, focused changes; one concern per commit",
         "names in snake_case, classes in CamelCase", "document every setting in the README",
         "never commit secrets or .env files", "format with black before pushing"]
SUBDIR_RULES = ["this package holds the core helpers", "keep this folder free of I/O",
                "tests for this folder live in tests/", "everything here is internal; no public API"]


def project_notes(rng: random.Random) -> str:
    """One or two notes files (the repository root's, sometimes a subdirectory's too), as the model reads them."""
    bullet = rng.choice(["- ", "* ", ""])
    body = rng.choice(TITLES) + "\n".join(bullet + r for r in rng.sample(RULES, rng.randint(2, 6)))
    files = [(rng.choice(["AGENTS.md", "AGENTS.md", "NANOCODE.md"]), body)]
    if rng.random() < 0.2:
        files.append((f"{rng.choice(['src', 'lib', 'app', 'pkg'])}/AGENTS.md", bullet + rng.choice(SUBDIR_RULES)))
    return notes_text(files)
