"""The user's text files on disk: one decoding rule shared by Read, Edit and Grep (so the text the model reads is
exactly the text Edit matches), safe opening, and atomic writes."""
import hashlib
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tools.result import ToolError

# Files up to 16 MB are decoded whole; Edit and Grep work only on those. Hand-written source is far smaller;
# bigger files are logs and data, which Read still pages through and Bash handles.
MAX_TEXT_BYTES = 16 * 1024 * 1024
# git's heuristic: a NUL byte among the first 8000 bytes marks a file as binary.
BINARY_SNIFF_BYTES = 8000


def is_binary(head: bytes) -> bool:
    return b"\x00" in head[:BINARY_SNIFF_BYTES]


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 when the bytes are valid UTF-8, else latin-1. latin-1 maps each byte to one
    character, so decode -> edit -> encode never loses or alters a byte of a file in a legacy encoding."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def open_regular(path: str | Path, name: str) -> BinaryIO:
    """Open for reading, refusing anything but a regular file. O_NONBLOCK makes opening a FIFO return at once
    instead of hanging until a writer appears; fstat then checks the very file we opened (no check-then-open race)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError:
        raise ToolError(f"permission denied reading {name}") from None
    except OSError as e:
        raise ToolError(f"cannot open {name}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolError(f"{name} is not a regular file (a device, FIFO or socket); only text files can be used")
    return os.fdopen(fd, "rb")


@dataclass(frozen=True)
class Version:
    """What a file held when it was read (its bytes' hash and length, its permission bits): compared again right
    before a rewrite, so that a save by another program in between is never overwritten. Content, not mtime:
    a `touch` loses nothing, while a same-size save within one mtime tick (coarse on some filesystems) would."""
    size: int
    sha256: str
    mode: int


def _version(data: bytes, st: os.stat_result) -> Version:
    return Version(len(data), hashlib.sha256(data).hexdigest(), stat.S_IMODE(st.st_mode))


def version_of(path: Path) -> Version | None:
    """The file's Version now; None if nothing is there. Reads at most MAX_TEXT_BYTES + 1 bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        return _version(f.read(MAX_TEXT_BYTES + 1) if stat.S_ISREG(st.st_mode) else b"", st)


@dataclass(frozen=True)
class TextFile:
    text: str
    encoding: str
    mode: int  # permission bits, kept when the file is rewritten
    version: Version  # what was read: atomic_write(expected=...) checks it is still there


def load_text(path: Path, name: str) -> TextFile:
    """A whole text file, decoded; binary and oversized files are refused with a message saying what to use."""
    with open_regular(path, name) as f:
        st = os.fstat(f.fileno())
        if st.st_size > MAX_TEXT_BYTES:
            raise ToolError(f"{name} is too large ({st.st_size:,} bytes; the limit is {MAX_TEXT_BYTES:,}). "
                            "Use Read with offset/limit to page through it, or Bash (sed, grep) to work on it.")
        data = f.read(MAX_TEXT_BYTES + 1)
    if is_binary(data):
        raise ToolError(f"{name} is a binary file ({len(data):,} bytes); only text files can be used. "
                        f"Use Bash (e.g. `file {name}`) to inspect it.")
    text, encoding = decode(data)
    return TextFile(text, encoding, stat.S_IMODE(st.st_mode), _version(data, st))


def encode(text: str, encoding: str, name: str) -> bytes:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as e:
        bad = text[e.start:e.end]
        raise ToolError(f"{name} is not UTF-8 (it is read and written as latin-1), and {bad!r} cannot be stored "
                        "in latin-1. Use only latin-1 characters, or convert the file to UTF-8 first with Bash "
                        f"(iconv -f latin1 -t utf-8).") from None


# Check-then-rename as one step for the writers in this process (two threads editing one file never lose each
# other's work); other programs can only slip into the microseconds between the check and the rename.
_REPLACE_LOCK = threading.Lock()


class FileChanged(ToolError):
    """atomic_write found `path` no longer as it was read (or created meanwhile); nothing was written."""


def atomic_write(path: Path, data: bytes, mode: int | None, expected: Version | None) -> None:
    """Write through a temp file in the same directory, then rename over `path`: readers and crashes see the old
    file or the new one, never half of one. `mode` None means a new file: the temp file is created with 0o666
    so the kernel applies the user's umask, as for any new file (no process-wide os.umask() dance).
    `expected`: what the caller read (None: that nothing was there). It is compared right before the rename,
    after the slow part (writing and fsync), and FileChanged is raised if another program wrote meanwhile.
    (A save by another program in the microseconds between that check and the rename can still be lost: POSIX
    has no compare-and-rename.)"""
    tmp = path.parent / f".nanocode-{secrets.token_hex(6)}.tmp"  # short: path.name may already be 255 bytes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        with _REPLACE_LOCK:
            if version_of(path) != expected:
                raise FileChanged(f"{path} changed while it was being written")
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
