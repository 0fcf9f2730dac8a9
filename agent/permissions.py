"""Who decides whether a tool call runs. Default: ask the user for every call.

The user answers allow once (`allow`), allow this tool for the rest of the session (`always`), or reject
(`reject`, optionally with a note that goes back to the model). `--allow Read,Grep` and `--yes`
pre-approve calls so that nobody is asked.
"""
from collections.abc import Iterable
from typing import Literal

from tools import SPECS

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


class Permissions:
    def __init__(self, allowed: Iterable[str] = (), yes: bool = False):
        self.allowed = set(parse_allow(list(allowed)))
        self.yes = yes
        self.always: set[str] = set()  # tools the user answered "always" this session

    def preapproved(self, tool_name: str) -> bool:
        return self.yes or tool_name in self.allowed or tool_name in self.always

    def record(self, tool_name: str, decision: Decision) -> None:
        answer, _ = decision
        if answer not in ANSWERS:
            raise PermissionsError(f"unknown permission answer {answer!r}; expected one of {', '.join(ANSWERS)}")
        if answer == "always":
            self.always.add(tool_name)

    def summary(self) -> str:
        """One line for the start-up banner: --yes must say so loudly, since Bash then runs unasked."""
        if self.yes:
            return "--yes: every tool call runs WITHOUT asking, Bash and Edit included"
        if self.allowed:
            return f"pre-approved: {', '.join(sorted(self.allowed))}; every other tool call asks first"
        return "every tool call asks for permission first"
