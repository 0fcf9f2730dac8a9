"""The small process between Bash and `bash -c COMMAND`, so that nothing the command starts outlives its call.

A process group is not enough: `setsid`, a double-forking daemon or `nohup ... &` leave it. This process is a
child subreaper (PR_SET_CHILD_SUBREAPER): every orphan among its descendants is re-parented to it instead of
to init, so the only processes it has to find are its own children, and it kills them with no PID-reuse race
(a child's PID is not reused before its parent reaps it). When bash exits the rest get GRACE_S to finish, then
are killed; on SIGTERM (timeout, interrupt, or the app dying: PR_SET_PDEATHSIG) everything is killed at once.
In the sandbox it confines the bash it forks (tools/sandbox.py), not itself, so a sandboxed command cannot
signal it (Landlock ABI >= 6).

    python -I -S -c "import sys; sys.path.append(TOOLS_DIR); import os, supervisor; supervisor.main(); ..." \
        PROTOCOL STATUS_FD PARENT_PID GRACE_S PRIVATE_TMP WRITABLE_DIR... -- BASH_PATH COMMAND

stdout/stderr are the output pipe; no WRITABLE_DIR means no sandbox. PRIVATE_TMP (or "-") is the caller's temp
directory for the call, which this process removes only if the caller died. The report goes to STATUS_FD as lines
of "key value": `code N` (bash's exit status; negative: killed by that signal) and `leftovers 0|1` (whether
background processes had to be killed), or `error WHY` (bash did not run), or `stopped 1`. bash runs in its own
process group (so that `kill 0` in a command reaches the command, not this process); where there is no subreaper
(not Linux), killing that group is all it can do, as Bash did before.
Fast to start: the standard library only, and none of the modules that take milliseconds to import (re,
enum, collections).
"""
import os
import sys
import time

import _signal as signal  # the C module behind `signal`, without the enum import (~3 ms of every call's start)

# The first argument; tools/bash.py passes the same. A long-running process that imported an older bash.py
# still starts this file from disk, so a change to the arguments below must change it.
PROTOCOL = "nanocode-supervisor/2"
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36
# Killing stops when nothing is left or after this long (a process stuck in the kernel ignores SIGKILL).
_KILL_LIMIT_S = 5.0


class Stop(Exception):
    pass


def _on_sigterm(signum, frame):
    raise Stop


def _become_subreaper() -> bool:
    if sys.platform != "linux":
        return False
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    ok = libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) == 0
    libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), 0, 0, 0)
    return ok


def _children() -> list[int]:
    """Our direct children (zombies included), from /proc; [] where /proc cannot tell."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:  # single-threaded: our one task
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    me, found = os.getpid(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:  # kernels built without CONFIG_PROC_CHILDREN: the parent field of every stat
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _reap_one() -> bool | None:
    """Reap one exited child: True if one was reaped, False if some are still running, None if none is left."""
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return None
    return pid != 0


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except OSError:
        return False


def _kill_all(pgid: int, reaper: bool) -> bool:
    """SIGKILL every descendant (orphans come to us as their parents die); True if there was any. Without a
    subreaper, only bash's process group can be reached."""
    if not reaper:
        return pgid > 0 and _kill_group(pgid, signal.SIGKILL)  # (killpg(0) would be our own group)
    killed, deadline = False, time.monotonic() + _KILL_LIMIT_S
    while time.monotonic() < deadline:
        reaped = _reap_one()
        if reaped is None:
            return killed
        if reaped:
            continue
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL)
                killed = True
            except OSError:
                pass
        time.sleep(0.005)
    return killed


def _wait_for(pid: int) -> int:
    while True:
        done, status = os.waitpid(-1, 0)  # reaps orphans that exit meanwhile, too
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def _finish(grace_s: float, pgid: int, reaper: bool) -> bool:
    """After bash exits: let the rest finish within grace_s, then kill them. True if any had to be killed."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if reaper:
            reaped = _reap_one()
            if reaped is None:
                return False
        elif not _kill_group(pgid, 0):  # signal 0: is anyone left in the group?
            return False
        time.sleep(0.01)
    return _kill_all(pgid, reaper)


def _start_bash(bash: str, command: str, writable: list[str]) -> int:
    """Fork and exec bash, confined first when `writable` is not empty; OSError says why it could not start."""
    confine = None
    if writable:
        from sandbox import confine  # tools/sandbox.py, found as the supervisor was: the tools package itself
        # is not importable under -I -S, and its directory is last on sys.path, so it never shadows the stdlib
    errors_r, errors_w = os.pipe()  # close-on-exec: end of file with no data means exec succeeded
    pid = os.fork()
    if pid == 0:
        stage = "the sandbox could not be set up"
        try:
            os.close(errors_r)
            # Its own process group: `kill 0` in a command must reach the command, not us.
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for ignored in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; `yes | head` needs SIGPIPE
                signal.signal(ignored, signal.SIG_DFL)
            if confine is not None:
                confine(writable)
            stage = "cannot start bash"
            os.execv(bash, ["bash", "-c", command])  # not execvp: its PATH search imports warnings (~1 ms)
        except BaseException as e:
            os.write(errors_w, f"{stage}: {getattr(e, 'strerror', None) or e}".encode("utf-8", "replace"))
        finally:
            os._exit(127)
    os.close(errors_w)
    with os.fdopen(errors_r, "rb") as errors:
        reason = errors.read().decode("utf-8", "replace")
    if reason:
        os.waitpid(pid, 0)
        raise OSError(reason)
    return pid


def _is_private_tmp(path: str, writable: list[str]) -> bool:
    """Only ever delete the directory tools/bash.py made for this call (tempfile.mkdtemp, prefix nanocode-bash-),
    never the workspace or anything else a wrong argument could name."""
    return (os.path.basename(path).startswith("nanocode-bash-") and path in writable
            and os.path.realpath(path) != os.path.realpath(os.getcwd()))


def main() -> None:
    if sys.argv[1:2] != [PROTOCOL]:  # a caller that loaded an older tools/bash.py: its arguments mean other things
        sys.stderr.write(f"nanocode: the Bash supervisor expected {PROTOCOL} from its caller; restart nanocode\n")
        return
    split = sys.argv.index("--")
    status_fd, parent, grace_s, private_tmp = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    writable, bash, command = sys.argv[6:split], sys.argv[split + 1], sys.argv[split + 2]
    os.set_inheritable(status_fd, False)
    signal.signal(signal.SIGTERM, _on_sigterm)
    report, reaper, pid, bash_reaped = {"stopped": "1"}, False, 0, False
    try:
        reaper = _become_subreaper()
        if os.getppid() != parent:  # the app died before PDEATHSIG was set: run nothing
            return
        try:
            pid = _start_bash(bash, command, writable)
        except OSError as e:
            report = {"error": " ".join(str(e).split())}
            return
        # The output pipe now belongs to bash and its children alone: its end of file means theirs.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        code = _wait_for(pid)
        bash_reaped = True
        report = {"code": str(code), "leftovers": str(int(_finish(grace_s, pid, reaper)))}
    except Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pid and not bash_reaped:
            _kill_group(pid, signal.SIGKILL)  # at once, before listing children one by one
        _kill_all(pid, reaper)
        if os.getppid() != parent and _is_private_tmp(private_tmp, writable):  # the app died: nobody else will
            import shutil
            shutil.rmtree(private_tmp, ignore_errors=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.write(status_fd, "".join(f"{k} {v}\n" for k, v in report.items()).encode("utf-8", "replace"))
        except OSError:
            pass

