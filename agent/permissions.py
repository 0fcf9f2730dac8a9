"""Who decides whether a tool call runs, and how confined it runs. Default: ask the user for every call, and
run Bash in the OS sandbox (tools/sandbox.py) where the machine has one.

The user answers allow once (`allow`), allow this tool for the rest of the session (`always`), or reject
(`reject`, optionally with a note that goes back to the model). `--allow Read,Grep` and `--yes`
pre-approve calls so that nobody is asked. `--sandbox off` runs Bash with the user's full access.
"""
from collections.abc import Iterable
from typing import Literal

from tools import SPECS, sandbox as tools_sandbox

Answer = Literal["allow", "always", "reject"]
Decision = tuple[Answer, str]  # (answer, note for a rejection)
ANSWERS = ("allow", "always", "reject")


class PermissionsError(ValueError):
    """A bad --allow list or answer; the message says how to fix it."""


def parse_allow(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'Read,Grep' (or ['Read', 'Grep'], or repeated options) -> ('Read', 'Grep'), checked against the tools.
    Names match case-insensitively so `--allow read` works."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    by_lower = {name.lower(): name for name in SPECS}
    names: list[str] = []
    for item in items:
        for raw in item.split(","):
            raw = raw.strip()
            if not raw:
                continue
            name = by_lower.get(raw.lower())
            if name is None:
                raise PermissionsError(f"--allow names an unknown tool {raw!r}; the tools are "
                                       f"{', '.join(SPECS)} (e.g. --allow Read,Grep)")
            if name not in names:
                names.append(name)
    return tuple(names)


def parse_sandbox(value: bool | str) -> bool:
    """`--sandbox on|off` (or a bool) -> whether Bash runs sandboxed."""
    if isinstance(value, bool):
        return value
    flag = str(value).strip().lower()
    if flag not in ("on", "off"):
        raise PermissionsError(f"--sandbox takes on or off, not {value!r} (off: Bash gets the network and "
                               "can write anywhere you can)")
    return flag == "on"


class Permissions:
    def __init__(self, allowed: Iterable[str] = (), yes: bool = False, sandbox: bool = True):
        self.allowed = set(parse_allow(list(allowed)))
        self.yes = yes
        self.sandbox = sandbox  # passed to tools.execute: Bash runs in the OS sandbox where there is one
        self.always: set[str] = set()  # tools the user answered "always" this session

    def preapproved(self, tool_name: str) -> bool:
        return self.yes or tool_name in self.allowed or tool_name in self.always

    def record(self, tool_name: str, decision: Decision) -> None:
        answer, _ = decision
        if answer not in ANSWERS:
            raise PermissionsError(f"unknown permission answer {answer!r}; expected one of {', '.join(ANSWERS)}")
        if answer == "always":
            self.always.add(tool_name)

    def forget_always(self) -> list[str]:
        """Drops the "always" answers: they were given for one conversation, and /clear starts another (the
        --allow and --yes flags stay). Returns the tools they were for, to tell the user."""
        names, self.always = sorted(self.always), set()
        return names

    def run_note(self, tool_name: str) -> str:
        """What the permission question adds about how the call will run ('' for tools other than Bash)."""
        return tools_sandbox.describe(self.sandbox) if tool_name == "Bash" else ""

    @property
    def bash_unconfined(self) -> bool:
        """Whether a Bash call would run with the user's full access (sandbox off, or none available here)."""
        return not (self.sandbox and tools_sandbox.probe().available)

    def summary(self) -> str:
        """One line for the start-up banner: --yes must say so loudly, since Bash then runs unasked."""
        if self.yes:
            return "--yes: every tool call runs WITHOUT asking, Bash and Edit included"
        if self.allowed:
            return f"pre-approved: {', '.join(sorted(self.allowed))}; every other tool call asks first"
        return "every tool call asks for permission first"


def cleared_message(reset: list[str]) -> str:
    """What /clear says: the conversation is gone, and which tools ask again."""
    if not reset:
        return "conversation cleared."
    return (f"conversation cleared; {', '.join(reset)} will ask again (\"always allow\" lasts one "
            "conversation).")
