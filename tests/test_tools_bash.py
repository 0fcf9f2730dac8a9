"""Bash: output, exit codes, closed stdin, timeouts and interrupts that kill the whole process group, floods."""
import threading
import time
from pathlib import Path

import pytest

import tools.bash
from tools import execute


def bash(ws, command, cancel=None, **args):
    return execute("Bash", {"command": command, **args}, ws, cancel=cancel)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a container's PID 1 may be slow to reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float = 2.0) -> bool:
    end = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return not alive(pid)


@pytest.fixture
def ws(tmp_path):
    return tmp_path


def test_combined_output_and_exit_code(ws):
    result = bash(ws, "echo out; echo err >&2; echo out2")
    assert result.ok and result.output == "out\nerr\nout2\n[exit code 0]"
    failed = bash(ws, "echo boom >&2; exit 3")
    assert not failed.ok and failed.output == "boom\n[exit code 3]"


def test_runs_in_the_workspace_with_bash(ws):
    (ws / "marker.txt").write_text("")
    result = bash(ws, "pwd; ls; echo ${BASH_VERSION:+bash}")
    assert result.output.split("\n")[:3] == [str(ws), "marker.txt", "bash"]


def test_no_output(ws):
    assert bash(ws, "true").output == "(no output)\n[exit code 0]"


def test_stdin_is_closed(ws):
    start = time.monotonic()
    result = bash(ws, "cat; read -r line || echo eof")
    assert result.output == "eof\n[exit code 0]" and time.monotonic() - start < 2


def test_killed_by_signal(ws):
    result = bash(ws, "kill -9 $$")
    assert not result.ok and "killed by signal SIGKILL" in result.output


def test_timeout_kills_the_whole_process_group(ws):
    start = time.monotonic()
    result = bash(ws, "sleep 100 & echo $! > child.pid; echo started; sleep 100", timeout="1")
    elapsed = time.monotonic() - start
    assert not result.ok and "timed out after 1 s" in result.output and result.output.startswith("started")
    assert elapsed < 3
    assert gone_within(int((ws / "child.pid").read_text()))


def test_background_children_do_not_outlive_the_call(ws):
    start = time.monotonic()
    result = bash(ws, "sleep 100 & echo $!")
    assert time.monotonic() - start < 2  # the child holds the output pipe, but we do not wait for it
    assert result.ok and "[exit code 0]" in result.output and "background processes" in result.output
    assert gone_within(int(result.output.split("\n")[0]))


def test_background_child_with_redirected_output_is_stopped_too(ws):
    result = bash(ws, "sleep 100 > /dev/null 2>&1 & echo $!")
    assert gone_within(int(result.output.split("\n")[0]))


def test_command_that_closes_its_output_but_keeps_running_is_waited_for(ws):
    start = time.monotonic()
    result = bash(ws, "echo before; exec >&- 2>&-; sleep 0.5; exit 4")
    assert result.output == "before\n[exit code 4]" and time.monotonic() - start >= 0.5


def test_interrupt_stops_within_a_second(ws):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    result = bash(ws, "sleep 100 & echo $! > child.pid; sleep 100", cancel=cancel)
    assert time.monotonic() - start < 1.3
    assert not result.ok and "interrupted by the user" in result.output
    assert gone_within(int((ws / "child.pid").read_text()))


def test_flood_keeps_head_and_tail_and_says_how_much_was_cut(ws):
    total = 5_000_000
    result = bash(ws, f"echo FIRST; head -c {total} /dev/zero | tr '\\0' x; echo; echo LAST")
    head, tail = tools.bash.HEAD_BYTES, tools.bash.TAIL_BYTES
    assert result.ok and result.output.startswith("FIRST\nxxx") and result.output.endswith("xxx\nLAST\n[exit code 0]")
    produced = len("FIRST\n") + total + len("\nLAST\n")
    assert f"[... {produced - head - tail:,} bytes of output cut ...]" in result.output
    assert len(result.output) < head + tail + 200


def test_endless_flood_with_timeout(ws):
    start = time.monotonic()
    result = bash(ws, "yes", timeout="1")
    assert time.monotonic() - start < 3
    assert not result.ok and "timed out" in result.output and len(result.output) < 31_000


def test_unicode_and_invalid_utf8_output(ws):
    result = bash(ws, "echo 日本語 🎉; printf 'bad \\xff byte\\n'")
    assert result.output == "日本語 🎉\nbad \ufffd byte\n[exit code 0]"


def test_output_is_not_a_terminal_and_there_is_no_controlling_tty(ws):
    result = bash(ws, "test -t 1 && echo tty || echo pipe; "
                      "(exec 3</dev/tty) 2>/dev/null && echo has-tty || echo no-tty")
    assert result.output == "pipe\nno-tty\n[exit code 0]"


@pytest.mark.parametrize("args,needle", [
    ({"command": "   "}, "command is empty"),
    ({"command": "echo a\x00b"}, "NUL"),
    ({"command": "true", "timeout": "0"}, "between 1 and 600"),
    ({"command": "true", "timeout": "601"}, "between 1 and 600"),
    ({"command": "true", "timeout": "soon"}, "whole number"),
])
def test_bad_arguments(ws, args, needle):
    result = execute("Bash", args, ws)
    assert not result.ok and needle in result.output


def test_default_timeout_is_30_seconds():
    assert tools.bash.DEFAULT_TIMEOUT_S == 30 and tools.bash.MAX_TIMEOUT_S == 600


# --- descendants that leave the process group (tools/supervisor.py) ---------------------------------------

# A daemon the classic way: fork, setsid, fork again, so that it is in no group or session of ours and its
# parent is gone; it writes its pid to the file named by $1 and sleeps.
DAEMON = ("python3 -c 'import os, sys, time\n"
          "if os.fork(): os._exit(0)\n"
          "os.setsid()\n"
          "if os.fork(): os._exit(0)\n"
          "open(sys.argv[1], \"w\").write(str(os.getpid())); time.sleep(999)' {pidfile}")


def pid_in(path: Path, seconds: float = 3.0) -> int:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


def test_a_setsid_child_does_not_outlive_a_timeout(ws):
    """The issue's reproduction: setsid puts the child in a new session, out of reach of killpg."""
    start = time.monotonic()
    result = bash(ws, "setsid sleep 999 & echo $! > child.pid; sleep 5", timeout="1")
    assert not result.ok and "timed out after 1 s" in result.output and time.monotonic() - start < 3
    assert gone_within(pid_in(ws / "child.pid"))


@pytest.mark.parametrize("command", [
    "setsid sleep 999 & echo $! > child.pid",
    "nohup sleep 999 > /dev/null 2>&1 & echo $! > child.pid",
    DAEMON.format(pidfile="child.pid"),
], ids=["setsid", "nohup", "double-fork-daemon"])
def test_nothing_started_outlives_a_normal_exit(ws, command):
    result = bash(ws, command)
    assert result.ok and "[exit code 0]" in result.output
    assert "background processes still running when the command ended were stopped" in result.output
    assert gone_within(pid_in(ws / "child.pid"))


def test_a_daemon_does_not_outlive_an_interrupt(ws):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = bash(ws, DAEMON.format(pidfile="child.pid") + "; sleep 100", cancel=cancel)
    assert not result.ok and "interrupted by the user" in result.output
    assert gone_within(pid_in(ws / "child.pid"))


def test_a_background_child_that_finishes_in_time_keeps_its_output(ws):
    result = bash(ws, "(sleep 0.05; echo late) & echo early")
    assert result.output == "early\nlate\n[exit code 0]"


def test_nothing_outlives_the_app_itself_being_killed(ws):
    """SIGKILL of the process that runs the tool (here a child python running tools.execute from a thread, as
    the app does): the supervisor gets SIGTERM (PR_SET_PDEATHSIG), kills everything and removes the private
    $TMPDIR nobody else is left to remove."""
    import os
    import signal
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    script = ("import sys, threading; sys.path.insert(0, sys.argv[1]); import tools; from pathlib import Path\n"
              "t = threading.Thread(target=tools.execute, args=('Bash', {'command': sys.argv[2]}, Path(sys.argv[3])))\n"
              "t.start(); t.join()")
    app = subprocess.Popen([sys.executable, "-c", script, str(root),
                            "echo $TMPDIR > tmpdir; " + DAEMON.format(pidfile="child.pid") + "; sleep 100", str(ws)])
    try:
        child = pid_in(ws / "child.pid", 10)
        assert alive(child)
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
    assert gone_within(child, 5)
    private_tmp = Path((ws / "tmpdir").read_text().strip())
    if private_tmp.name.startswith("nanocode-bash-"):  # sandboxed: the call's own $TMPDIR goes with it
        end = time.monotonic() + 5
        while private_tmp.exists() and time.monotonic() < end:
            time.sleep(0.02)
        assert not private_tmp.exists()


def test_supervisor_overhead_is_small(ws):
    """A whole call of `true`: ~10-12 ms on the 2-core dev box (a bare `bash -c true` is ~1.3 ms, the supervisor's
    interpreter ~6 ms; training/LOG.md). A generous bound: shared CI machines are noisy."""
    bash(ws, "true")
    start = time.monotonic()
    for _ in range(5):
        assert bash(ws, "true").ok
    assert (time.monotonic() - start) / 5 < 0.5


def test_kill_0_reaches_the_command_and_nothing_else(ws):
    """bash has its own process group under the supervisor: `kill 0` ends the command, reported as before."""
    result = bash(ws, "sleep 100 & echo $! > child.pid; kill 0")
    assert not result.ok and "[killed by signal SIGTERM]" in result.output
    assert gone_within(pid_in(ws / "child.pid"))


def test_the_supervisor_refuses_arguments_of_another_version(ws):
    """A long-running process that imported an older tools/bash.py starts today's supervisor from disk: it must
    run nothing rather than read the old arguments with today's meaning."""
    import subprocess
    import sys
    old_style = [sys.executable, "-I", "-S", "-c", tools.bash._SUPERVISOR, "5", "1", "0.2", str(ws), "--",
                 "bash", "touch ran"]
    done = subprocess.run(old_style, cwd=ws, capture_output=True, text=True, timeout=10)
    assert "expected nanocode-supervisor/2" in done.stderr and not (ws / "ran").exists() and ws.is_dir()
    from tools import supervisor
    assert supervisor.PROTOCOL == tools.bash._PROTOCOL
