"""Bash: run `bash -c COMMAND` in the workspace; combined stdout/stderr, exit code, whole process group killed
on timeout or interrupt."""
import os
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path

from tools.result import ToolError, ToolResult

DEFAULT_TIMEOUT_S = 30
MAX_TIMEOUT_S = 600
# Output keeps its first and last 15,000 bytes (30 KB in all): the head shows what ran, the tail how it ended.
HEAD_BYTES = 15_000
TAIL_BYTES = 15_000
# Once bash has exited, background children still holding the output pipe get this long before they are stopped.
_GRACE_S = 0.2
# How often the loop checks the deadline and the cancel event: an interrupt takes effect within ~50 ms.
_POLL_S = 0.05


class _Capture:
    """Output kept as head + tail, so a flood of gigabytes costs 30 KB of memory."""

    def __init__(self) -> None:
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = HEAD_BYTES - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > 2 * TAIL_BYTES:  # trim rarely, so the cost stays linear in the output size
            del self.tail[:-TAIL_BYTES]

    def text(self) -> str:
        tail = bytes(self.tail[-TAIL_BYTES:])
        cut = self.total - len(self.head) - len(tail)
        if cut == 0:
            return (bytes(self.head) + tail).decode("utf-8", "replace")
        return (self.head.decode("utf-8", "replace") + f"\n[... {cut:,} bytes of output cut ...]\n"
                + tail.decode("utf-8", "replace"))


def _kill_group(pgid: int) -> bool:
    """SIGKILL every process in the group; False if none was left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _read_into(fd: int, selector: selectors.BaseSelector, capture: _Capture, wait_s: float) -> bool:
    """Read what arrives within wait_s; False at end of file."""
    if selector.select(wait_s):
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        capture.add(chunk)
    return True


def run(workspace: Path, command: str, timeout: int = DEFAULT_TIMEOUT_S,
        cancel: threading.Event | None = None) -> ToolResult:
    if not command.strip():
        raise ToolError("command is empty; give a shell command to run, e.g. ls -la")
    if "\x00" in command:
        raise ToolError("command contains a NUL character, which a shell command cannot hold")
    if not 1 <= timeout <= MAX_TIMEOUT_S:
        raise ToolError(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds; got {timeout}")
    try:
        # A new session makes the command a process-group leader (so one killpg reaches all its children) and
        # detaches it from our terminal (so nothing can prompt on /dev/tty); stdin is closed for the same reason.
        proc = subprocess.Popen(["bash", "-c", command], cwd=workspace, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        raise ToolError(f"cannot start bash: {e.strerror or e}") from None
    capture, start, stopped, exited_at, open_ = _Capture(), time.monotonic(), None, None, True
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        try:
            while True:
                if open_:
                    open_ = _read_into(fd, selector, capture, _POLL_S)
                else:  # bash closed its output but may still run
                    try:
                        proc.wait(_POLL_S)
                    except subprocess.TimeoutExpired:
                        pass
                now = time.monotonic()
                if cancel is not None and cancel.is_set():
                    stopped = f"interrupted by the user after {now - start:.1f} s"
                    break
                if now - start > timeout:
                    stopped = f"timed out after {timeout} s"
                    break
                if proc.poll() is not None:
                    exited_at = exited_at or now
                    if not open_ or now - exited_at > _GRACE_S:
                        break
        finally:
            leftovers = _kill_group(proc.pid)  # on every path: nothing the command started outlives the call
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            end = time.monotonic() + _GRACE_S
            while open_ and time.monotonic() < end:  # what was still in the pipe; bounded, in case a
                open_ = _read_into(fd, selector, capture, _GRACE_S)  # daemonised grandchild holds it open
            proc.stdout.close()
    output = capture.text().removesuffix("\n") or "(no output)"
    if stopped:
        return ToolResult(False, f"{output}\n[{stopped}: the command and its child processes were killed]")
    code = proc.returncode
    status = f"[exit code {code}]" if code >= 0 else f"[killed by signal {_signal_name(-code)}]"
    if leftovers:
        status += "\n[background processes still running when the command ended were stopped]"
    return ToolResult(code == 0, f"{output}\n{status}")
