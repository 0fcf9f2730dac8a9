"""Edit: exact string replacement in a text file, or creation of a new file; returns a diff and a FileChange."""
import difflib
import os
import re
from pathlib import Path

from tools.files import FileChanged, atomic_write, encode, load_text
from tools.paths import directory_message, missing_message, resolve, shown
from tools.read import line_prefix
from tools.result import FileChange, ToolError, ToolResult

# The diff in the model's result is cut after 60 lines (the full one is in FileChange.diff for the app).
DIFF_PREVIEW_LINES = 60
# "Closest lines" hints compare against at most this many lines, so a miss on a huge file stays fast.
_HINT_MAX_LINES = 20_000
# Read's prefix: right-aligned number and a tab. Small models paste it into old_string; we strip it.
_PREFIX = re.compile(r"^ *\d+\t")


def _lines(text: str) -> list[str]:
    """Lines split on LF or CRLF only (str.splitlines would also split on form feeds and U+2028)."""
    lines = re.split(r"\r?\n", text)
    return lines[:-1] if lines[-1] == "" else lines


def unified_diff(before: str, after: str, name: str, created: bool = False) -> str:
    return "\n".join(difflib.unified_diff(_lines(before), _lines(after), "/dev/null" if created else f"a/{name}",
                                          f"b/{name}", lineterm=""))


def _preview(diff: str) -> str:
    lines = diff.split("\n")
    if len(lines) <= DIFF_PREVIEW_LINES:
        return diff
    return "\n".join(lines[:DIFF_PREVIEW_LINES] + [f"[... diff cut: {len(lines) - DIFF_PREVIEW_LINES} more lines]"])


def _strip_prefixes(text: str) -> str | None:
    """text without Read's line-number prefixes, if every line carries one; else None."""
    lines = text.split("\n")
    if not all(_PREFIX.match(line) for line in lines):
        return None
    return "\n".join(_PREFIX.sub("", line, count=1) for line in lines)


def _line_of(body: str, index: int) -> int:
    return body.count("\n", 0, index) + 1


def _occurrence_lines(body: str, old: str) -> list[int]:
    lines, start = [], body.find(old)
    while start != -1:
        lines.append(_line_of(body, start))
        start = body.find(old, start + len(old))
    return lines


def _no_match_message(body: str, old: str, name: str) -> str:
    """old_string is not in the file: show the most similar lines, numbered as Read does, so the model can copy them."""
    message = f"old_string was not found in {name}; the file was not changed."
    if " ".join(old.split()) in " ".join(body.split()):
        message += " The text is there with different whitespace or indentation (tabs vs spaces?): copy it exactly."
    lines = body.split("\n")[:_HINT_MAX_LINES]
    old_lines = old.strip("\n").split("\n")
    key = next((line.strip() for line in old_lines if line.strip()), "")
    stripped = [line.strip() for line in lines]
    close = difflib.get_close_matches(key, stripped, n=3, cutoff=0.5) if key else []
    starts = sorted({stripped.index(c) for c in close})
    if not starts:
        return message + " No similar lines either: Read the file to see its current content."
    width = min(len(old_lines), 8)
    blocks = ["\n".join(line_prefix(i + 1) + lines[i] for i in range(s, min(s + width, len(lines)))) for s in starts]
    return message + " The closest lines are:\n" + "\n...\n".join(blocks)


def _changed_meanwhile(name: str) -> ToolError:
    return ToolError(f"{name} was changed by another program while Edit was working on it, so Edit wrote "
                     f"nothing (that change is kept). Read {name} again and redo the edit on what it holds now.")


def _create(target: Path, name: str, content: str) -> ToolResult:
    """Empty old_string: write a new file (and its directories), or fill an existing empty one; never overwrite."""
    mode, expected = None, None
    if target.is_dir():
        raise ToolError(directory_message(target, name) + ". Give a file path to create.")
    if target.exists():
        existing = load_text(target, name)
        if existing.text:
            raise ToolError(f"{name} already exists and is not empty, so an empty old_string cannot create it. "
                            "To change it, Read it and pass the exact text to replace as old_string.")
        mode, expected = existing.mode, existing.version
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, content.encode("utf-8"), mode, expected)
    except FileChanged:
        raise _changed_meanwhile(name) from None
    except OSError as e:
        raise ToolError(f"cannot create {name}: {e.strerror or e}") from None
    diff = unified_diff("", content, name, created=mode is None)
    count = len(_lines(content))
    change = FileChange(name, None if mode is None else "", content, "utf-8", diff)
    return ToolResult(True, f"Created {name} ({count} line{'s' * (count != 1)}).\n{_preview(diff)}".rstrip(), change)


def run(workspace: Path, path: str, old_string: str, new_string: str, replace_all: bool = False) -> ToolResult:
    name = shown(path)
    target = resolve(workspace, path)
    if old_string == "":
        return _create(target, name, new_string)
    if old_string == new_string:
        raise ToolError("old_string and new_string are identical, so nothing would change; "
                        "give the new text as new_string")
    if target.is_dir():
        raise ToolError(directory_message(target, path))
    if not target.exists():
        raise ToolError(f"{missing_message(target, path)} To create a new file, call Edit with an empty old_string.")
    file = load_text(target, name)
    if file.mode & 0o222 == 0:
        raise ToolError(f"{name} is read-only (mode {file.mode:o}); it was not changed. "
                        "If it really should be edited, make it writable with Bash (chmod u+w) first.")
    # A pure-CRLF file is edited as LF text and converted back, so the model's "\n" matches and CRLF stays CRLF.
    # (Mixed-ending files are matched as they are.)
    crlf = "\r\n" in file.text and "\n" not in file.text.replace("\r\n", "")
    body = file.text.replace("\r\n", "\n") if crlf else file.text
    old, new = old_string, new_string
    if crlf:
        old, new = old.replace("\r\n", "\n"), new.replace("\r\n", "\n")
    note = ""
    if old not in body and (unprefixed := _strip_prefixes(old)) is not None and unprefixed in body:
        unprefixed_new = _strip_prefixes(new)  # new_string too, when it carries them on every line
        old, new = unprefixed, new if unprefixed_new is None else unprefixed_new
        note = " (Read's line-number prefixes were removed from old_string)"
    lines = _occurrence_lines(body, old)
    if not lines:
        raise ToolError(_no_match_message(body, old, name))
    if len(lines) > 1 and not replace_all:
        raise ToolError(f"old_string occurs {len(lines)} times in {name} (lines {', '.join(map(str, lines))}); "
                        "the file was not changed. Include more surrounding lines to make it unique, "
                        "or set replace_all=true to replace every occurrence.")
    after_body = body.replace(old, new) if replace_all else body.replace(old, new, 1)
    after = after_body.replace("\n", "\r\n") if crlf else after_body
    try:
        atomic_write(target, encode(after, file.encoding, name), file.mode, file.version)
    except FileChanged:
        raise _changed_meanwhile(name) from None
    except OSError as e:
        raise ToolError(f"cannot write {name}: {e.strerror or e}; it was not changed") from None
    diff = unified_diff(file.text, after, name)
    where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines))}"
    count = f"{len(lines)} occurrence{'s' * (len(lines) != 1)}"
    return ToolResult(True, f"Edited {name}: replaced {count} at {where}{note}.\n{_preview(diff)}",
                      FileChange(name, file.text, after, file.encoding, diff))


def revert(workspace: Path, change: FileChange) -> ToolResult:
    """Undo one Edit: put `change.before` back (or delete the file Edit created). Refuses when the file no longer
    holds `change.after`, because reverting then would throw away changes made since. Undo several newest first."""
    name = change.path
    target = resolve(workspace, name)
    if not target.is_file():
        raise ToolError(f"cannot undo the edit of {name}: the file no longer exists")
    current = load_text(target, name)
    if current.text != change.after:
        raise ToolError(f"cannot undo the edit of {name}: it has changed since; undoing would lose those changes")
    try:
        if change.before is None:  # directories the Edit created stay: they may hold other files by now
            os.unlink(target)
            return ToolResult(True, f"Undid the creation of {name}: the file was deleted.")
        atomic_write(target, encode(change.before, change.encoding, name), current.mode, current.version)
    except FileChanged:
        raise ToolError(f"cannot undo the edit of {name}: another program changed it just now; "
                        "undoing would lose that change") from None
    except OSError as e:
        raise ToolError(f"cannot undo the edit of {name}: {e.strerror or e}; it was not changed") from None
    diff = unified_diff(change.after, change.before, name)
    return ToolResult(True, f"Undid the edit of {name}.\n{_preview(diff)}", FileChange(
        name, change.after, change.before, change.encoding, diff))
