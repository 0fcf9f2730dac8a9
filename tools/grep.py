"""Grep: search text files for a Python regular expression; `path:line:text` lines sorted by path, then line.

The search runs in a child Python process: Python's `re` cannot be interrupted and holds the GIL, so a pattern with
catastrophic backtracking such as `(a+)+$` would otherwise freeze the whole app. The child is killed on timeout
or when the caller's cancel event is set. `search()` is the same search, in-process."""
import json
import os
import re
import subprocess
import sys
import threading
import time
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING

from tools.files import MAX_TEXT_BYTES, decode, is_binary, load_text, open_regular
from tools.paths import missing_message, relative, resolve, shown
from tools.result import ToolError, ToolResult
from tools.walk import ignored_ancestor, list_files

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

# Caps: output stops at 50,000 characters (~12k tokens) and then only counts what it leaves out; a matching line
# is cut at 500 characters (minified code would otherwise fill the page with one match); a search gets 60 s.
MAX_OUTPUT_CHARS = 50_000
MAX_LINE_CHARS = 500
TIMEOUT_S = 60.0
_MAX_GLOBS = 64


def compile_pattern(pattern: str) -> re.Pattern:
    if not pattern:
        raise ToolError("pattern is empty; give a regular expression to search for, e.g. def parse_args")
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        position = f" at position {e.pos}" if getattr(e, "pos", None) is not None else ""
        raise ToolError(f"invalid regular expression {pattern!r}: {getattr(e, 'msg', e)}{position}. This is a Python "
                        r"regex: escape special characters such as ( ) [ ] { } . * + ? | \ with a backslash "
                        r"(e.g. foo\(x\)) to match them literally.") from None


def _expand_braces(glob: str) -> list[str]:
    """'*.{py,pyi}' -> ['*.py', '*.pyi'] (innermost braces first, so nesting works)."""
    match = re.search(r"\{([^{}]*)\}", glob)
    if match is None:
        return [glob]
    before, after = glob[:match.start()], glob[match.end():]
    return [g for alt in match.group(1).split(",") for g in _expand_braces(before + alt + after)]


def glob_spec(glob: str) -> "GitIgnoreSpec":
    """A glob in .gitignore syntax, matched against workspace-relative paths: without a slash it matches a name
    at any depth (*.py), with one it is anchored at the workspace root (src/**/*.py); {a,b} alternatives and
    !negations work; a glob of only negations (!*.md) means "everything except"."""
    import pathspec  # imported when first needed, as in tools/walk.py

    globs = _expand_braces(glob.strip())
    if len(globs) > _MAX_GLOBS:
        raise ToolError(f"the glob {glob!r} expands to {len(globs)} patterns; use at most {_MAX_GLOBS}")
    if all(g.startswith("!") for g in globs):
        globs = ["*"] + globs
    try:
        return pathspec.GitIgnoreSpec.from_lines(globs)
    except Exception as e:
        raise ToolError(f"invalid glob {glob!r}: {e}. Use a pattern like *.py or src/**/*.ts") from None


def _file_text(path: str) -> str | None:
    """A walked file's text, or None for what Grep skips silently: binary, too large, unreadable, not regular."""
    try:
        with open_regular(path, "") as f:
            if os.fstat(f.fileno()).st_size > MAX_TEXT_BYTES:
                return None
            data = f.read(MAX_TEXT_BYTES + 1)
    except (ToolError, OSError):
        return None
    return None if is_binary(data) else decode(data)[0]


def search(workspace: Path, pattern: str, path: str = "", glob: str = "", use_rg: bool = True) -> ToolResult:
    regex = compile_pattern(pattern)
    root = workspace.resolve()
    target = resolve(workspace, path or ".")
    where = shown(path or ".")
    if target.is_file():  # an explicit file is searched whatever .gitignore and glob say
        texts = [(relative(workspace, target), load_text(target, where).text)]
    elif target.is_dir():
        ignored, rules = ignored_ancestor(root, target)
        if ignored is not None:
            why = (f"Grep never searches {ignored} (git's own data)" if ignored.rsplit("/", 1)[-1] == ".git"
                   else f"{ignored} is ignored by .gitignore, and Grep skips ignored files")
            return ToolResult(True, f"No matches: {why}. To search it anyway use Bash, e.g. grep -rn 'PATTERN' {where}")
        names = list_files(root, target, rules, use_rg)
        if glob:
            spec = glob_spec(glob)
            names = [n for n in names if spec.match_file(n)]
        texts = ((n, _file_text(os.path.join(root, n))) for n in names)
    elif not os.path.lexists(target):
        raise ToolError(missing_message(target, path))
    else:
        raise ToolError(f"{where} is not a regular file or directory; Grep searches files and directories")
    out, used, left_matches, left_files, searched = [], 0, 0, 0, 0
    for name, text in texts:
        if text is None:
            continue
        searched += 1
        lines = text.replace("\r\n", "\n").split("\n")  # a CRLF line matches like an LF one (foo$ included)
        if lines[-1] == "":
            lines.pop()  # the "line" after a final newline does not exist
        missed = 0
        # compress(map(...)) runs the per-line loop in C; with the CRLF fold above it took a search of the
        # Python stdlib (50,724 files) from 18.9 s to 4.1 s.
        for index in compress(range(len(lines)), map(regex.search, lines)):
            number, line = index + 1, lines[index]
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + " [... line cut]"
            entry = f"{name}:{number}:{line}"
            if left_matches or used + len(entry) + 1 > MAX_OUTPUT_CHARS:
                left_matches, missed = left_matches + 1, missed + 1
                continue
            out.append(entry)
            used += len(entry) + 1
        left_files += missed > 0
    if not out:
        scope = f" matching glob {glob!r}" if glob else ""
        return ToolResult(True, f"No matches for {pattern!r} in {where} ({searched} text file"
                                f"{'s' * (searched != 1)} searched{scope}).")
    if left_matches:
        out.append(f"[... {left_matches} more matching lines in {left_files} file{'s' * (left_files != 1)} not shown; "
                   "narrow the search with path or glob, or a more specific pattern]")
    return ToolResult(True, "\n".join(out))


def _child_main() -> None:
    """Entry point of the child process: arguments as JSON on stdin, the ToolResult as JSON on stdout."""
    args = json.load(sys.stdin)
    try:
        result = search(Path(args.pop("workspace")), **args)
    except ToolError as e:
        result = ToolResult(False, str(e))
    except Exception as e:  # reported like the registry reports it, not as a traceback
        result = ToolResult(False, f"Grep failed with an unexpected error ({type(e).__name__}: {e})")
    json.dump({"ok": result.ok, "output": result.output}, sys.stdout)


def run(workspace: Path, pattern: str, path: str = "", glob: str = "",
        cancel: threading.Event | None = None, timeout: float = TIMEOUT_S) -> ToolResult:
    compile_pattern(pattern)  # a bad pattern fails here, without starting a process
    if not sys.executable:  # embedded interpreter: no child to start, search in-process
        return search(workspace, pattern, path, glob)
    package_parent = str(Path(__file__).resolve().parent.parent)  # so the child imports this very `tools`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    # -P keeps the current directory (often the user's repository) off sys.path, so a json.py or re.py there can
    # neither shadow the standard library nor run in the child.
    child = subprocess.Popen([sys.executable, "-P", "-c", "from tools.grep import _child_main; _child_main()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             cwd=package_parent)
    # The workspace goes absolute: the child runs in another directory.
    request = json.dumps({"workspace": str(Path(workspace).resolve()), "pattern": pattern, "path": path,
                          "glob": glob})
    deadline = time.monotonic() + timeout
    pending, stopped = request.encode(), None
    try:
        while True:
            try:
                stdout, stderr = child.communicate(pending, timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pending = None  # communicate() has sent the input already; later calls must not resend it
                if cancel is not None and cancel.is_set():
                    stopped = "was interrupted"
                elif time.monotonic() > deadline:
                    stopped = f"took longer than {timeout:g} s and was stopped"
                if stopped:
                    break
    finally:
        if child.poll() is None:  # stopped, or an exception in this thread: never leave the child running
            child.kill()
            child.communicate()
    if stopped:
        raise ToolError(f"the search {stopped}. Narrow it with path or glob; a pattern with nested "
                        "repetition such as (a+)+ can take forever on some lines.")
    try:
        reply = json.loads(stdout)
        return ToolResult(bool(reply["ok"]), str(reply["output"]))
    except (ValueError, KeyError, TypeError):
        tail = stderr.decode("utf-8", "replace").strip()[-2000:]
        raise ToolError(f"the search process failed (exit code {child.returncode}): {tail}") from None
