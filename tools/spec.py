"""What each tool accepts: the one description the template, the synthetic-data generator and the app read."""
from dataclasses import dataclass


@dataclass(frozen=True)
class ArgSpec:
    name: str
    required: bool
    description: str


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args: tuple[ArgSpec, ...]

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args if a.required)


SPECS: dict[str, ToolSpec] = {
    "Read": ToolSpec("Read", "show numbered lines of a text file", (
        ArgSpec("path", True, "file path relative to the workspace"),
        ArgSpec("offset", False, "first line to show, 1-based (default 1)"),
        ArgSpec("limit", False, "how many lines to show (default 2000)"),
    )),
    "Edit": ToolSpec("Edit", "replace an exact string in a file; an empty old_string creates a new file", (
        ArgSpec("path", True, "file path relative to the workspace"),
        ArgSpec("old_string", True, "the exact text to replace (empty to create a new file)"),
        ArgSpec("new_string", True, "the text to put in its place"),
        ArgSpec("replace_all", False, "'true' to replace every occurrence (default: must match once)"),
    )),
    "Grep": ToolSpec("Grep", "search files for a Python regular expression, printing path:line:text", (
        ArgSpec("pattern", True, "a Python regular expression"),
        ArgSpec("path", False, "a file or directory to search (default: the whole workspace)"),
        ArgSpec("glob", False, "only search files whose name matches this glob, e.g. *.py"),
    )),
    "Bash": ToolSpec("Bash", "run a shell command in the workspace and show its output and exit code", (
        ArgSpec("command", True, "the command line, run with bash -c"),
        ArgSpec("timeout", False, "seconds before the command is killed (default 30, max 600)"),
    )),
}
