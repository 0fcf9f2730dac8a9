"""Bash: run `bash -c COMMAND` in the workspace; combined stdout/stderr, exit code; every process the command
started is killed on timeout or interrupt, and when it ends (tools/supervisor.py). Sandboxed by default
(tools/sandbox.py): writes only in the workspace and a private $TMPDIR, removed after the call, no network."""
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tools import sandbox as tools_sandbox
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
# After SIGTERM the supervisor kills every descendant (milliseconds); past this it is SIGKILLed itself.
_STOP_WAIT_S = 2.0
# Imported rather than run as a script, so that its compiled bytecode is cached (a script is compiled every time).
# os._exit: its report is written, so interpreter shutdown would only delay the caller's wait.
_SUPERVISOR = (f"import sys; sys.path.append({str(Path(__file__).parent)!r}); "
               "import os, supervisor; supervisor.main(); os._exit(0)")
_PROTOCOL = "nanocode-supervisor/2"  # = tools/supervisor.py's PROTOCOL (not imported: it is not a package module)
# Added to a failed sandboxed command's result when the failure looks like the sandbox's doing: EACCES, EPERM,
# or EXDEV (what Landlock answers to a link or rename out of the writable directories).
SANDBOX_NOTE = ("this command ran in the sandbox: writing outside the workspace and $TMPDIR, and any network "
                "access, are refused")
_SANDBOX_SIGNS = ("ermission denied", "not permitted", "cross-device link")


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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _remove_tree(path: str) -> None:
    """Remove the private temp directory we made, including read-only directories a command left in it."""
    def writable_and_retry(func, failed, _exc):
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
        func(failed)
    handler = {"onexc" if sys.version_info >= (3, 12) else "onerror": writable_and_retry}
    shutil.rmtree(path, **handler)


def run(workspace: Path, command: str, timeout: int = DEFAULT_TIMEOUT_S,
        cancel: threading.Event | None = None, sandbox: bool = True) -> ToolResult:
    """`sandbox`: confine the command (tools/sandbox.py) where this machine can; where it cannot, the command
    runs as it always did and tools.sandbox.status() says so."""
    if not command.strip():
        raise ToolError("command is empty; give a shell command to run, e.g. ls -la")
    if "\x00" in command:
        raise ToolError("command contains a NUL character, which a shell command cannot hold")
    if not 1 <= timeout <= MAX_TIMEOUT_S:
        raise ToolError(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds; got {timeout}")
    if not (sandbox and tools_sandbox.probe().available):
        return _run(workspace, command, timeout, cancel, None)
    private_tmp = tempfile.mkdtemp(prefix="nanocode-bash-")
    try:
        return _run(workspace, command, timeout, cancel, private_tmp)
    finally:
        try:
            _remove_tree(private_tmp)
        except OSError:
            pass  # left in the system temp directory, which the OS cleans


def _run(workspace: Path, command: str, timeout: int, cancel: threading.Event | None,
         private_tmp: str | None) -> ToolResult:
    """Runs the command under tools/supervisor.py, sandboxed when private_tmp (its writable $TMPDIR) is given."""
    bash = shutil.which("bash")
    if bash is None:
        raise ToolError("cannot start bash: there is no bash on PATH")
    status_r, status_w = os.pipe()
    writable, env = [], None
    if private_tmp is not None:
        writable, env = [str(workspace.resolve()), private_tmp], {**os.environ, "TMPDIR": private_tmp}
    argv = [sys.executable, "-I", "-S", "-c", _SUPERVISOR, _PROTOCOL, str(status_w), str(os.getpid()),
            str(_GRACE_S), private_tmp or "-", *writable, "--", bash, command]
    try:
        # A new session makes the supervisor a process-group leader (bash and its children join its group) and
        # detaches it from our terminal (so nothing can prompt on /dev/tty); stdin is closed for the same reason.
        proc = subprocess.Popen(argv, cwd=workspace, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(status_w,))
    except OSError as e:
        os.close(status_r)
        raise ToolError(f"cannot start bash: {e.strerror or e}") from None
    finally:
        os.close(status_w)
    capture, report, start, stopped, done_at = _Capture(), bytearray(), time.monotonic(), None, None
    out_fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(out_fd, selectors.EVENT_READ)
        selector.register(status_r, selectors.EVENT_READ)

        def pump(wait_s: float) -> None:
            """Read what arrives within wait_s; a pipe at end of file is unregistered."""
            for key, _ in selector.select(wait_s):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.fd == out_fd:
                    capture.add(chunk)
                else:
                    report.extend(chunk)

        def still_open(fd: int) -> bool:
            return fd in selector.get_map()

        try:
            while still_open(out_fd) or still_open(status_r):
                pump(_POLL_S)
                now = time.monotonic()
                if cancel is not None and cancel.is_set():
                    stopped = f"interrupted by the user after {now - start:.1f} s"
                    break
                if now - start > timeout:
                    stopped = f"timed out after {timeout} s"
                    break
                if not still_open(status_r):  # the supervisor reported: bash and (on Linux) all else are gone
                    done_at = done_at or now
                    if now - done_at > _GRACE_S:  # the output is held open by something out of our reach
                        break
        finally:
            if still_open(status_r):  # timeout, interrupt, or an error here: the supervisor kills everything
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + _STOP_WAIT_S
                while still_open(status_r) and time.monotonic() < deadline:
                    pump(_POLL_S)
                if still_open(status_r):  # a supervisor that hangs (a bug): stop at least it
                    proc.kill()
            proc.wait()
            deadline = time.monotonic() + _GRACE_S
            while still_open(out_fd) and time.monotonic() < deadline:  # what was still in the pipe
                pump(_GRACE_S)
            proc.stdout.close()
            os.close(status_r)
    status = _status(bytes(report))
    output = capture.text().removesuffix("\n") or "(no output)"
    if stopped:
        return ToolResult(False, f"{output}\n[{stopped}: the command and its child processes were killed]")
    if "error" in status:
        hint = " (the user can run Bash without it: --sandbox off)" if private_tmp is not None else ""
        raise ToolError(f"{status['error']}; the command did not run{hint}")
    if "code" not in status:
        return ToolResult(False, f"{output}\n[the command's supervisor failed (exit status {proc.returncode}); "
                                 "whether the command ran is unknown]")
    code = int(status["code"])
    result = f"[exit code {code}]" if code >= 0 else f"[killed by signal {_signal_name(-code)}]"
    if status.get("leftovers") == "1":
        result += "\n[background processes still running when the command ended were stopped]"
    if private_tmp is not None and code != 0 and any(sign in output for sign in _SANDBOX_SIGNS):
        result += f"\n[{SANDBOX_NOTE}]"
    return ToolResult(code == 0, f"{output}\n{result}")


def _status(data: bytes) -> dict[str, str]:
    """The supervisor's report: one "key value" per line (see tools/supervisor.py)."""
    pairs = (line.partition(" ") for line in data.decode("utf-8", "replace").splitlines())
    return {key: value for key, _, value in pairs if key}
