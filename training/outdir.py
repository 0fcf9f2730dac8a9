"""Output directories: a stage writes only into a directory that is new, empty or its own, and only one process
writes it at a time.

    <out>/.nanocode   {"stage": "train base", "pid": 1234, "host": ..., "command": ..., "since": ...}

`claim(out, stage, writes)` is the first thing every stage that writes an --out does:
- it refuses a file, and a non-empty directory without the marker: stages replace what they wrote before (the
  corpus its shards, a training run its model/), so writing into someone's directory could cost them files;
- it refuses a directory another stage made (`train sft --out` on a pretraining run would mix the two runs);
- it writes the marker and takes an exclusive flock on it. A second process on the same --out stops with the
  holder's pid and command. The kernel drops the lock when the holder exits, kill -9 included, so a stale
  lock never needs clearing (a pid in the marker whose process is gone means nothing).
A directory written before the marker existed is adopted when it holds the stage's record (the first of
`writes`) and nothing that the stage does not write (`writes` are glob patterns of names in the directory).

A claim lasts as long as the process, or until release(): claiming a directory this process holds returns
that claim, so a stage called again in one process (the speedrun, the tests) goes on.
"""
import fcntl
import fnmatch
import json
import os
import socket
import sys
import time
from pathlib import Path

from training.common import StageError

MARKER = ".nanocode"

# What a training stage (train base/sft/dpo/rl) writes into its --out; log.jsonl is its record.
RUN_FILES = ("log.jsonl", "ckpt", "ckpt_corrupt", "model", "complete.json", "gate.json", ".model.tmp-*",
             ".model.old-*")


class Claim:
    def __init__(self, path: Path, fd: int, stage: str):
        self.path, self.fd, self.stage = path, fd, stage

    def release(self) -> None:
        if _held.get(self.path) is self:
            del _held[self.path]
            os.close(self.fd)  # closing the descriptor drops the lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


_held: dict[Path, Claim] = {}


def claim(out, stage: str, writes: tuple[str, ...] = ()) -> Claim:
    """Make `out` this process's output directory for `stage` (e.g. "data corpus"), or raise StageError."""
    out = Path(out).expanduser().resolve()  # one key per directory, however it is spelled
    if out in _held:
        if _held[out].stage != stage:
            raise StageError(_mixed(out, _held[out].stage, stage))
        return _held[out]
    if out.exists() and not out.is_dir():
        raise StageError(f"--out {out} is a file, not a directory; pass a directory (a new one, or one that "
                         f"`nanocode {stage}` wrote)")
    _check_ours(out, stage, writes)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / MARKER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        who = (f"pid {holder.get('pid')} on {holder.get('host')}: `{holder.get('command')}`, since "
               f"{holder.get('since')}") if holder else "another process"
        raise StageError(f"{out} is being written by {who}; wait for it to finish (or stop it), or pass another "
                         "--out") from None
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
    record = {"stage": stage, "pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _held[out] = Claim(out, fd, stage)
    return _held[out]


def release(out) -> None:
    """Give up this process's claim on `out` (if it holds one): another process may write it now."""
    held = _held.get(Path(out).expanduser().resolve())
    if held is not None:
        held.release()


def _check_ours(out: Path, stage: str, writes: tuple[str, ...]) -> None:
    if not out.is_dir():
        return
    if (out / MARKER).is_file():
        marked = _read_path(out / MARKER).get("stage")
        if marked and marked != stage:
            raise StageError(_mixed(out, marked, stage))
        return
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return
    legacy = writes and (out / writes[0]).exists() and all(
        any(fnmatch.fnmatchcase(n, pattern) for pattern in writes) for n in names)
    if not legacy:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise StageError(f"{out} is not empty ({shown}) and was not made by nanocode (no {MARKER} in it); "
                         f"nanocode never writes into a directory of other files. Pass a new or empty --out "
                         f"directory, or move those files away")


def _mixed(out: Path, marked: str, stage: str) -> str:
    return f"{out} holds the output of `nanocode {marked}`, not of `nanocode {stage}`; pass another --out"


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 1 << 16, 0).decode() or "{}")
    except (ValueError, OSError):  # the holder may be rewriting it this very moment
        return {}


def _read_path(path: Path) -> dict:
    try:
        record = json.loads(path.read_text() or "{}")
        return record if isinstance(record, dict) else {}
    except (ValueError, OSError):
        return {}
