"""The user's text files on disk: one decoding rule shared by Read, Edit and Grep (so the text the model reads is
exactly the text Edit matches), safe opening, and atomic writes."""
import os
import secrets
import stat
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
class TextFile:
    text: str
    encoding: str
    mode: int  # permission bits, kept when the file is rewritten


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
    return TextFile(text, encoding, stat.S_IMODE(st.st_mode))


def encode(text: str, encoding: str, name: str) -> bytes:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as e:
        bad = text[e.start:e.end]
        raise ToolError(f"{name} is not UTF-8 (it is read and written as latin-1), and {bad!r} cannot be stored "
                        "in latin-1. Use only latin-1 characters, or convert the file to UTF-8 first with Bash "
                        f"(iconv -f latin1 -t utf-8).") from None


def atomic_write(path: Path, data: bytes, mode: int | None) -> None:
    """Write through a temp file in the same directory, then rename over `path`: readers and crashes see the old
    file or the new one, never half of one. `mode` None means a new file: the temp file is created with 0o666
    so the kernel applies the user's umask, as for any new file (no process-wide os.umask() dance)."""
    tmp = path.parent / f".nanocode-{secrets.token_hex(6)}.tmp"  # short: path.name may already be 255 bytes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
