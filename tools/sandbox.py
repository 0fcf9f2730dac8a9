"""The OS sandbox Bash runs in (on by default): writes only inside the workspace and a private temp directory,
no network at all, reads anywhere. Linux only, unprivileged, through two kernel mechanisms called with ctypes:

- Landlock (Linux >= 5.13) for the filesystem: every write right (create, write, truncate, remove, rename,
  link) is denied except beneath the allowed directories. From ABI 4 it also denies TCP bind/connect, and from
  ABI 6 connecting to abstract unix sockets and signalling processes outside the sandbox (the app itself).
- seccomp for the network: socket() of any family but AF_UNIX fails with EACCES (UDP, raw and netlink too,
  which Landlock cannot stop), and io_uring is refused (its socket operations bypass the socket() check).

Both are inherited by every descendant and cannot be undone; setting them up costs ~1 ms. Chosen over
`unshare -rn` and bubblewrap, which start faster (2.5 and 5 ms a call, against ~10 ms for the Python supervisor,
which is there anyway to end every descendant) and cover more (a read-only mount stops chmod too), because both need
unprivileged user namespaces, which Docker's default seccomp profile refuses and Ubuntu >= 24.04 grants only to
programs with an AppArmor profile, and bubblewrap is one more binary to install; Landlock and seccomp need neither
root nor a namespace (measurements: training/LOG.md). Not covered: metadata of files outside (chmod,
utime, xattrs: Landlock has no right for them), connecting to pathname unix sockets (a docker or D-Bus socket the
user can reach stays reachable), and a command running as root keeps its capabilities. `no_new_privs` is set, so
setuid programs (sudo) gain nothing inside.

This module imports only the standard library, and only what starts fast (no re, platform, dataclasses):
tools/supervisor.py imports it in a fresh interpreter for every sandboxed call.
"""
import ctypes
import os
import struct
import sys

# --- Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on every architecture ---
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS_WRITE_FILE, _FS_REMOVE_DIR, _FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
# MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM
_FS_MAKE = (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
# Rights that apply to a single file (the others only make sense beneath a directory).
_FILE_RIGHTS = _FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV

# --- prctl and seccomp (include/uapi/linux/prctl.h, seccomp.h, filter.h, audit.h) ---
_PR_SET_NO_NEW_PRIVS, _PR_GET_SECCOMP, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 21, 22, 2
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_EACCES, _EPERM, _AF_UNIX = 13, 1, 1
# machine -> (audit arch, socket, io_uring_setup, first x32 syscall or None)
_ARCHES = {"x86_64": (0xC000003E, 41, 425, 0x40000000), "aarch64": (0xC00000B7, 198, 425, None)}

# Writable besides the workspace and the private temp directory: the data sinks every shell script uses, and
# /dev/shm, where POSIX semaphores live (Python's multiprocessing locks and queues fail without it).
EXTRA_WRITABLE_FILES = ("/dev/null", "/dev/zero", "/dev/full")
EXTRA_WRITABLE_DIRS = ("/dev/shm",)


class SandboxError(OSError):
    """The sandbox could not be set up; the command must not run unconfined instead."""


class Support:
    """What probe() found: `available`, `detail` (what confines Bash here, or why nothing can), the Landlock ABI."""
    __slots__ = ("available", "detail", "landlock_abi")

    def __init__(self, available: bool, detail: str, landlock_abi: int = 0) -> None:
        self.available, self.detail, self.landlock_abi = available, detail, landlock_abi

    def __repr__(self) -> str:
        return f"Support({self.available}, {self.detail!r}, {self.landlock_abi})"


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter already has loaded
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _syscall(libc, number: int, *args) -> int:
    result = libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def _prctl(libc, option: int, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
    as_ulong = [a if isinstance(a, ctypes.c_void_p) else ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5)]
    result = libc.prctl(ctypes.c_int(option), *as_ulong)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


_probed: Support | None = None


def probe() -> Support:
    """What this machine offers (asked once per process; the calls only query, they restrict nothing)."""
    global _probed
    if _probed is None:
        _probed = _probe()
    return _probed


def _probe() -> Support:
    if sys.platform != "linux":
        return Support(False, f"no OS sandbox for Bash on {sys.platform} yet")
    machine = os.uname().machine
    if machine not in _ARCHES:
        return Support(False, f"no seccomp filter for the {machine} architecture yet")
    try:
        libc = _libc()
        abi = _syscall(libc, _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError as e:
        return Support(False, f"Landlock is not available (Linux {os.uname().release}: {e.strerror}; "
                              "it needs Linux >= 5.13 with Landlock enabled)")
    except AttributeError as e:  # a C library without syscall() or prctl()
        return Support(False, f"the C library lacks {e}")
    try:
        _prctl(libc, _PR_GET_SECCOMP)
    except OSError as e:
        return Support(False, f"seccomp is not available ({e.strerror})")
    return Support(True, f"Landlock ABI {abi} + seccomp", abi)


def status(enabled: bool = True) -> str:
    """One line for the start-up banner: whether Bash runs sandboxed, and if not, why."""
    if not enabled:
        return "sandbox off (--sandbox off): Bash runs with your full access, network included"
    support = probe()
    if support.available:
        return (f"sandbox on ({support.detail}): Bash writes only in the workspace and a private $TMPDIR, "
                "and has no network; --sandbox off lifts it")
    return f"no sandbox: {support.detail}; Bash runs with your full access, network included"


def describe(enabled: bool = True) -> str:
    """Half a line for the permission question of a Bash call."""
    if not enabled:
        return "runs without a sandbox (--sandbox off)"
    if probe().available:
        return "runs in the sandbox: no network, writes only in the workspace"
    return "runs without a sandbox (none available here)"


# --- confining the calling process (run by tools/supervisor.py, in a single-threaded process) ---

def _landlock(libc, abi: int, writable_dirs: list[str], writable_files: list[str]) -> None:
    handled = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE
    if abi >= 2:
        handled |= _FS_REFER  # without it (ABI 1) Landlock refuses every rename into another directory
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled, net, scoped)[:8 if abi < 4 else 16 if abi < 6 else 24]
    ruleset = _syscall(libc, _SYS_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)),
                       ctypes.c_uint32(0))
    try:
        for path, rights in [(d, handled) for d in writable_dirs] + [(f, handled & _FILE_RIGHTS)
                                                                     for f in writable_files]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # e.g. no /dev/shm in a minimal container: nothing to allow there
            try:
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                _syscall(libc, _SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), rule,
                         ctypes.c_uint32(0))
            finally:
                os.close(fd)
        _syscall(libc, _SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _seccomp_no_network(libc) -> None:
    arch, nr_socket, nr_io_uring_setup, x32 = _ARCHES[os.uname().machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    deny_socket, deny = _RET_ERRNO | _EACCES, _RET_ERRNO | _EPERM
    program = [
        _bpf(ld, 4),                                   # 0: seccomp_data.arch
        _bpf(jeq, arch, 1, 0),                         # 1: our architecture? (32-bit programs are refused)
        _bpf(ret, deny),                               # 2
        _bpf(ld, 0),                                   # 3: seccomp_data.nr
        _bpf(jge, x32 or 0xFFFFFFFF, 0, 1),            # 4: x32 syscalls (a second table on x86_64): refuse
        _bpf(ret, deny),                               # 5
        _bpf(jeq, nr_io_uring_setup, 0, 1),            # 6
        _bpf(ret, deny),                               # 7
        _bpf(jeq, nr_socket, 1, 0),                    # 8
        _bpf(ret, _RET_ALLOW),                         # 9: any other syscall
        _bpf(ld, 16),                                  # 10: args[0], the address family (low 32 bits)
        _bpf(jeq, _AF_UNIX, 0, 1),                     # 11
        _bpf(ret, _RET_ALLOW),                         # 12
        _bpf(ret, deny_socket),                        # 13
    ]
    filters = ctypes.create_string_buffer(b"".join(program))
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(program), ctypes.addressof(filters)))
    _prctl(libc, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.c_void_p(ctypes.addressof(fprog)))


def confine(writable_dirs: list[str]) -> None:
    """Confine this process and everything it will start: writes only beneath `writable_dirs` (and the
    EXTRA_WRITABLE_* paths), no network. Call it in a single-threaded process. Raises SandboxError."""
    support = probe()
    if not support.available:
        raise SandboxError(support.detail)
    try:
        libc = _libc()
        _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)  # required by both for an unprivileged process
        _landlock(libc, support.landlock_abi, list(writable_dirs) + list(EXTRA_WRITABLE_DIRS),
                  list(EXTRA_WRITABLE_FILES))
        _seccomp_no_network(libc)
    except OSError as e:
        raise SandboxError(f"{e.strerror or e}") from None
