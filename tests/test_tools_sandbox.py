"""The OS sandbox of Bash (tools/sandbox.py), through the real tools.execute path: writes only inside the
workspace and a private $TMPDIR, no network (localhost included), reads anywhere; off, everything works as
before; on a machine without the kernel mechanisms, Bash still runs and the status says why."""
import os
import socket
import threading
from pathlib import Path

import pytest

import tools.bash
import tools.sandbox
from agent.permissions import Permissions, PermissionsError, parse_sandbox
from tools import execute

SUPPORT = tools.sandbox.probe()
needs_sandbox = pytest.mark.skipif(not SUPPORT.available, reason=f"no OS sandbox on this machine: {SUPPORT.detail}")


def bash(ws, command, sandbox=True):
    return execute("Bash", {"command": command}, ws, sandbox=sandbox)


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "ws"


@pytest.fixture
def listener():
    """A TCP server on localhost that records every connection it accepts."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
    thread = threading.Thread(target=serve)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


CONNECT = ("python3 -c 'import socket, sys; socket.create_connection((\"127.0.0.1\", int(sys.argv[1])), 2); "
           "print(\"connected\")' {port}")
UDP = ("python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
       ".sendto(b\"x\", (\"127.0.0.1\", 9)); print(\"sent\")'")


@needs_sandbox
def test_writes_go_only_to_the_workspace_and_the_private_tmpdir(ws):
    outside = ws.parent / "outside"
    result = bash(ws, f"echo no > {outside}/f.txt; echo yes > inside.txt && mkdir -p sub/dir && mv inside.txt sub/ "
                      "&& echo in-workspace; echo t > $TMPDIR/t && cat $TMPDIR/t && echo $TMPDIR")
    assert "Permission denied" in result.output and "in-workspace" in result.output
    assert not (outside / "f.txt").exists() and (ws / "sub" / "inside.txt").read_text() == "yes\n"
    tmpdir = result.output.split("\n")[-2]
    assert result.output.split("\n")[-3] == "t" and tmpdir != "/tmp" and Path(tmpdir).name.startswith("nanocode-bash-")
    assert not Path(tmpdir).exists()  # private to the call: removed after it


@needs_sandbox
@pytest.mark.parametrize("command", [
    "rm -rf {outside}", "rm {outside}/keep.txt", "echo more >> {outside}/keep.txt", "truncate -s 0 {outside}/keep.txt",
    "mv {outside}/keep.txt kept.txt", "ln {outside}/keep.txt hard.txt && echo x >> hard.txt",
    "touch {outside}/../escape", "ln -s /etc {outside}/l", "mkdir {outside}/d", "mkfifo {outside}/p",
    "python3 -c 'open(\"{outside}/new\", \"w\")'",
])
def test_every_kind_of_write_outside_is_refused(ws, command):
    """(Landlock does not cover metadata: chmod, utime and xattrs of files outside still work; see tools/sandbox.py.)"""
    outside = ws.parent / "outside"
    (outside / "keep.txt").write_text("the user's\n")
    result = bash(ws, command.format(outside=outside))
    assert not result.ok and any(e in result.output for e in ("Permission denied", "not permitted", "cross-device"))
    assert os.listdir(outside) == ["keep.txt"] and (outside / "keep.txt").read_text() == "the user's\n"
    assert not (ws.parent / "escape").exists()
    assert tools.bash.SANDBOX_NOTE in result.output  # the model is told why, so it does not retry in vain


@needs_sandbox
def test_reads_anywhere_and_ordinary_sinks_work(ws):
    if not Path("/etc/hostname").is_file():
        pytest.skip("no /etc/hostname here")
    result = bash(ws, "cat /etc/hostname; echo quiet > /dev/null; echo err > /dev/stderr; ls / > /dev/null && echo ls")
    assert result.ok and result.output == f"{Path('/etc/hostname').read_text().strip()}\nerr\nls\n[exit code 0]"


@needs_sandbox
def test_no_network_not_even_localhost(ws, listener):
    port, accepted = listener
    tcp = bash(ws, CONNECT.format(port=port))
    assert not tcp.ok and "connected" not in tcp.output and "Permission denied" in tcp.output
    udp = bash(ws, UDP)
    assert not udp.ok and "sent" not in udp.output
    assert accepted == []
    local = bash(ws, "python3 -c 'import socket; a, b = socket.socketpair(); a.send(b\"ok\"); print(b.recv(2))'")
    assert local.ok and "b'ok'" in local.output  # unix socket pairs (pipes between processes) still work


@needs_sandbox
@pytest.mark.skipif(SUPPORT.landlock_abi < 6, reason="signal scoping needs Landlock ABI 6 (Linux 6.12)")
def test_a_sandboxed_command_cannot_signal_the_app(ws):
    result = bash(ws, f"kill -0 {os.getpid()} && echo reached")
    assert not result.ok and "reached" not in result.output


def test_with_the_sandbox_off_everything_works_as_before(ws, listener):
    port, accepted = listener
    outside = ws.parent / "outside"
    result = bash(ws, f"echo yes > {outside}/f.txt && echo wrote; echo ${{TMPDIR:-unset}}; "
                      + CONNECT.format(port=port), sandbox=False)
    assert result.ok and "wrote" in result.output and "connected" in result.output
    assert (outside / "f.txt").read_text() == "yes\n"
    assert result.output.split("\n")[1] == os.environ.get("TMPDIR", "unset")  # TMPDIR untouched
    assert bash(ws, UDP, sandbox=False).ok


def test_where_no_sandbox_exists_bash_still_runs_and_the_status_says_why(ws, monkeypatch):
    monkeypatch.setattr(tools.sandbox, "probe", lambda: tools.sandbox.Support(False, "Landlock is not available "
                                                                              "(forced for this test)"))
    outside = ws.parent / "outside"
    result = bash(ws, f"echo yes > {outside}/f.txt && echo wrote; echo ${{TMPDIR:-unset}}")
    assert result.ok and result.output == f"wrote\n{os.environ.get('TMPDIR', 'unset')}\n[exit code 0]"
    status = tools.sandbox.status()
    assert status.startswith("no sandbox: Landlock is not available (forced for this test)")
    assert "full access" in status
    assert tools.sandbox.describe() == "runs without a sandbox (none available here)"
    assert Permissions().run_note("Bash") == "runs without a sandbox (none available here)"
    assert Permissions().bash_unconfined


def test_status_lines():
    assert tools.sandbox.status(False).startswith("sandbox off (--sandbox off)")
    assert tools.sandbox.describe(False) == "runs without a sandbox (--sandbox off)"
    assert Permissions(sandbox=False).run_note("Bash") == "runs without a sandbox (--sandbox off)"
    assert Permissions().run_note("Read") == ""
    if SUPPORT.available:
        assert tools.sandbox.status().startswith(f"sandbox on ({SUPPORT.detail})")
        assert tools.sandbox.describe() == "runs in the sandbox: no network, writes only in the workspace"
        assert not Permissions().bash_unconfined and Permissions(sandbox=False).bash_unconfined


def test_sandbox_setting_parses_on_and_off():
    assert parse_sandbox("on") is True and parse_sandbox("OFF") is False and parse_sandbox(False) is False
    with pytest.raises(PermissionsError, match="on or off"):
        parse_sandbox("maybe")


@needs_sandbox
def test_a_sandbox_that_fails_to_set_up_refuses_to_run_the_command(ws, monkeypatch):
    """Never silently unconfined: if confining fails at run time, the command does not run at all."""
    not_a_directory = ws.parent / "file"
    not_a_directory.write_text("")
    real_run = tools.bash._run

    def run_with_a_bad_rule(workspace, command, timeout, cancel, private_tmp):
        # Directory rights on a regular file: Landlock refuses the rule (EINVAL), so confining fails.
        return real_run(workspace, command, timeout, cancel, str(not_a_directory))
    monkeypatch.setattr(tools.bash, "_run", run_with_a_bad_rule)
    result = bash(ws, "touch ran")
    assert not result.ok and "the sandbox could not be set up" in result.output and "did not run" in result.output
    assert not (ws / "ran").exists()
