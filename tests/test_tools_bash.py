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
