"""What each tool accepts: the one description the template, the synthetic-data generator and the app read."""
from dataclasses import dataclass


@dataclass(frozen=True)
class ArgSpec:
    name: str
    required: bool
    description: str
    kind: str = "str"  # "str", "int" or "bool": values travel as strings and the registry parses them


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
    "Read": ToolSpec("Read", "show a text file's lines, numbered from 1; long files are paged with offset", (
        ArgSpec("path", True, "file path relative to the workspace"),
        ArgSpec("offset", False, "first line to show, 1-based (default 1)", "int"),
        ArgSpec("limit", False, "how many lines to show (default 2000)", "int"),
    )),
    "Edit": ToolSpec("Edit", "replace an exact string in a file (it must occur once unless replace_all); "
                             "an empty old_string creates a new file", (
        ArgSpec("path", True, "file path relative to the workspace"),
        ArgSpec("old_string", True, "the exact text to replace, as Read shows it but without the line numbers "
                                    "(empty to create a new file)"),
        ArgSpec("new_string", True, "the text to put in its place"),
        ArgSpec("replace_all", False, "'true' to replace every occurrence (default: must match once)", "bool"),
    )),
    "Grep": ToolSpec("Grep", "search files for a Python regular expression; prints path:line:text, "
                             "skipping .gitignored and binary files", (
        ArgSpec("pattern", True, "a Python regular expression"),
        ArgSpec("path", False, "a file or directory to search (default: the whole workspace)"),
        ArgSpec("glob", False, "only search files matching this glob, e.g. *.py or src/**/*.ts"),
    )),
    "Bash": ToolSpec("Bash", "run a bash command in the workspace and show its output and exit code "
                             "(no input; background processes are stopped when it ends)", (
        ArgSpec("command", True, "the command line, run with bash -c"),
        ArgSpec("timeout", False, "seconds before the command is killed (default 30, max 600)", "int"),
    )),
}
