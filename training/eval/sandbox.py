"""Run untrusted Python (model-written HumanEval solutions) in a throwaway subprocess.

Each program gets: its own temporary directory as cwd and HOME, an empty environment (no proxies, no
tokens), CPU-time, address-space, file-size and core-dump rlimits, a wall-clock timeout that kills the
whole process group, no network where `unshare -n` works, and an unprivileged user (nobody) when we run
as root. Output goes to a file capped by RLIMIT_FSIZE, so a program that prints forever cannot fill our
memory before the timeout fires.

The rlimits are set by a tiny bootstrap that runs inside the child before the untrusted code (instead of
`subprocess`'s `preexec_fn`): preexec_fn is documented as unsafe when the parent has threads, and the
parent here has JAX's and the thread pool's. The untrusted code cannot raise a hard limit once it is set.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

NOBODY_UID = 65534

# argv: cpu_seconds memory_bytes file_bytes uid program.py. Sets limits, drops root where it can, and
# when it cannot, takes away the calls that delete, move or overwrite files outside the sandbox directory
# (an accident guard against a model that writes `shutil.rmtree(path)`, not a defence against an attacker).
_BOOTSTRAP = """\
import builtins, io, os, resource, shutil, sys
cpu, mem, fsize, uid = (int(a) for a in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if uid >= 0:
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
else:
    def refuse(*args, **kwargs):
        raise PermissionError("the evaluation sandbox does not allow this call")
    for name in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
                 "chmod", "chown", "kill", "killpg", "system"):
        setattr(os, name, refuse)
    shutil.rmtree = shutil.move = refuse
    home, real_open = os.path.realpath(os.getcwd()), builtins.open
    def open_inside(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not isinstance(file, int) and \\
                not os.path.realpath(file).startswith(home + os.sep):
            raise PermissionError(f"the evaluation sandbox only writes inside {home}")
        return real_open(file, mode, *args, **kwargs)
    builtins.open = io.open = open_inside
sys.argv = sys.argv[5:]
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""

@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0   # wall clock; the process group is killed after it
    cpu_s: int = 10           # RLIMIT_CPU: SIGXCPU, then SIGKILL a second later
    memory_mb: int = 1024     # RLIMIT_AS: allocations past it raise MemoryError
    output_kb: int = 256      # RLIMIT_FSIZE on every file the program writes, its stdout included


@dataclass(frozen=True)
class Isolation:
    """What the platform let us do; recorded in every eval JSON so a reader knows how the code ran."""
    net_prefix: tuple[str, ...]
    uid: int  # -1: run as ourselves

    @property
    def network(self) -> str:
        return "off (" + " ".join(self.net_prefix) + ")" if self.net_prefix else "on (unshare unavailable)"

    @property
    def user(self) -> str:
        return "nobody" if self.uid >= 0 else "same as the evaluator"


@dataclass(frozen=True)
class RunResult:
    status: str          # passed | failed | timeout | killed (by a signal: CPU or file-size limit, crash)
    exit_code: int | None
    output: str          # combined stdout and stderr, at most Limits.output_kb
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _clean_env(tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1"}


def _command(net_prefix: tuple[str, ...], uid: int, limits: Limits, program: Path) -> list[str]:
    return [*net_prefix, sys.executable, "-I", "-c", _BOOTSTRAP, str(limits.cpu_s), str(limits.memory_mb << 20),
            str(limits.output_kb << 10), str(uid), str(program)]


def _try(cmd: list[str], cwd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, env=_clean_env(cwd), cwd=cwd).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@cache
def probe_isolation() -> Isolation:
    """Finds the strongest isolation that works here, once per process: a network namespace (as root,
    `unshare -n`; otherwise a user namespace, `unshare -rn`) and, as root, the nobody user. Each is
    tried with a real interpreter start, so a platform that forbids one just runs without it (e.g. nobody
    cannot read an interpreter installed under /root)."""
    tmp = tempfile.mkdtemp(prefix="nanocode-sandbox-probe-")
    try:
        net: tuple[str, ...] = ()
        if shutil.which("unshare"):
            net = next((p for p in (("unshare", "-n"), ("unshare", "-rn")) if _try([*p, "true"], tmp)), ())
        uid = -1
        if os.geteuid() == 0:
            program = Path(tmp) / "probe.py"
            program.write_text("import collections, hashlib, itertools, math, re, typing\nopen('w', 'w')\n")
            os.chown(tmp, NOBODY_UID, NOBODY_UID)
            if _try(_command(net, NOBODY_UID, Limits(), program), tmp):
                uid = NOBODY_UID
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Isolation(net, uid)


def run_python(source: str, limits: Limits = Limits(), workspace: Path | None = None) -> RunResult:
    """Runs `source` as a script in a fresh sandbox; never raises for anything the program does.
    With `workspace`, a copy of that directory is the program's cwd (the original is never touched)."""
    iso = probe_isolation()
    tmp = tempfile.mkdtemp(prefix="nanocode-sandbox-")
    try:
        if workspace is not None:
            shutil.copytree(workspace, tmp, dirs_exist_ok=True, symlinks=True)
        if iso.uid >= 0:  # the program may write scratch files in its cwd
            for path in [Path(tmp), *Path(tmp).rglob("*")]:
                os.lchown(path, iso.uid, iso.uid)
        program = Path(tmp) / "_sandbox_program.py"
        program.write_text(source, encoding="utf-8")
        out_path = Path(tmp) / ".sandbox_output"
        cmd = _command(iso.net_prefix, iso.uid, limits, program)
        start = time.monotonic()
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=tmp, env=_clean_env(tmp), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                # Kill the whole group either way: the program may have forked children that outlive it.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        seconds = time.monotonic() - start
        with open(out_path, "rb") as f:
            output = f.read(limits.output_kb << 10).decode("utf-8", errors="replace")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    code = proc.returncode
    if timed_out:
        status = "timeout"
    elif code == 0:
        status = "passed"
    elif code < 0:
        status = "killed"
        output += f"\n[killed by {signal.Signals(-code).name}]"
    else:
        status = "failed"
    return RunResult(status, None if timed_out else code, output, round(seconds, 3))


def run_many(sources: list[str], limits: Limits = Limits(), workers: int | None = None) -> list[RunResult]:
    """Runs programs in parallel, one subprocess each, over the machine's cores; results in input order.
    Threads suffice: each one only waits on its child."""
    workers = workers or os.cpu_count() or 1
    probe_isolation()  # once, before the threads race for it
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_python(s, limits), sources))
