"""Read: numbered lines of a text file, paged with offset/limit."""
import io
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from tools.files import BINARY_SNIFF_BYTES, MAX_TEXT_BYTES, decode, is_binary, open_regular
from tools.paths import directory_message, missing_message, resolve, shown
from tools.result import ToolError, ToolResult

# Caps. A page is 2000 lines; a line longer than 2000 characters (minified or generated code) is cut, and a page
# stops at 50,000 characters (~12k tokens): enough to read a whole normal file, small enough not to drown the
# model's context. The footer says where to continue.
DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_OUTPUT_CHARS = 50_000
# Bytes read per line: 4 bytes per character covers any UTF-8, so the MAX_LINE_CHARS characters we keep are whole.
_MAX_LINE_BYTES = 4 * MAX_LINE_CHARS + 4


def line_prefix(number: int) -> str:
    """How Read numbers a line; Edit recognises this prefix when a model pastes it into old_string."""
    return f"{number:>6}\t"


def _raw_lines(f: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, whether it was cut). Reads at most _MAX_LINE_BYTES of any line into memory,
    so a gigabyte-long line costs no more than a short one."""
    while chunk := f.readline(_MAX_LINE_BYTES):
        cut = not chunk.endswith(b"\n") and len(chunk) == _MAX_LINE_BYTES
        while cut and (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
            pass  # skip the remainder of an over-long line
        yield chunk.rstrip(b"\n"), cut


def run(workspace: Path, path: str, offset: int = 1, limit: int = DEFAULT_LIMIT) -> ToolResult:
    if offset < 1:
        raise ToolError(f"offset is the first line to show, counted from 1; got {offset}")
    if limit < 1:
        raise ToolError(f"limit is how many lines to show and must be at least 1; got {limit}")
    name = shown(path)
    target = resolve(workspace, path)
    if target.is_dir():
        raise ToolError(directory_message(target, path) + ". Read one of these files, or Grep to search them.")
    if not target.exists():
        raise ToolError(missing_message(target, path))
    with open_regular(target, name) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return ToolResult(True, f"{name} is empty (0 bytes).")
        if is_binary(f.read(BINARY_SNIFF_BYTES)):
            raise ToolError(f"{name} is a binary file ({size:,} bytes); Read shows text files only. "
                            f"Use Bash to inspect it, e.g. `file {name}` or `xxd {name} | head`.")
        f.seek(0)
        total = None
        if size <= MAX_TEXT_BYTES:  # decide the encoding on the whole file, exactly as Edit will
            data = f.read()
            encoding = decode(data)[1]
            total = data.count(b"\n") + (not data.endswith(b"\n"))
            source: BinaryIO = io.BytesIO(data)
        else:  # too big to edit anyway: page through it as UTF-8, marking undecodable bytes with U+FFFD
            encoding, source = "utf-8", f
        out, used, last, more, seen = [], 0, offset - 1, False, 0
        for number, (raw, cut) in enumerate(_raw_lines(source), 1):
            seen = number
            if number < offset:
                continue
            if number >= offset + limit:
                more = True
                break
            line = raw.decode(encoding, "replace")
            line = line[:-1] if line.endswith("\r") else line  # CRLF files show like LF ones; Edit handles both
            if cut or len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} characters]"
            entry = line_prefix(number) + line
            if out and used + len(entry) + 1 > MAX_OUTPUT_CHARS:
                more = True
                break
            out.append(entry)
            used += len(entry) + 1
            last = number
    if not out:
        raise ToolError(f"offset {offset} is past the end of {name}, which has {seen} lines; "
                        f"use an offset between 1 and {seen}")
    notes = []
    if more:
        of = f" of {total}" if total is not None else ""
        notes.append(f"[showing lines {offset}-{last}{of}; call Read with offset={last + 1} to see more]")
    if encoding == "latin-1":
        notes.append("[this file is not valid UTF-8; it is shown (and edited) as latin-1]")
    return ToolResult(True, "\n".join(out + notes))
