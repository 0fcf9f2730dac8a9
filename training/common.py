"""What every training stage shares: its one error type, its flags' plumbing (presets, config fields as
flags, the one-line error), the resume check, the JSONL log, the completion marker, finding and publishing
models, and the device's peak for MFU. Nothing here imports JAX at module import time, so a stage's
`--help` is instant."""
import argparse
import functools
import json
import os
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

COMPLETE = "complete.json"  # written last into a stage's --out: the stage is done (a rerun, or the speedrun, skips it)


class StageError(Exception):
    """A problem the user can fix (bad flags, missing or mismatched inputs, an incompatible --out). A stage's
    main() prints it as one line, `error: ...`, and exits 2: no traceback."""


def fail(message) -> int:
    """Print `error: message` on stderr; the exit status of a user error."""
    print(f"error: {message}", file=sys.stderr)
    return 2


# --- flags --------------------------------------------------------------------------------------------

class Flags(argparse.ArgumentParser):
    """argparse, with a flag it cannot parse reported as the one line every user error gets."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def from_preset(presets: dict, config_cls, name: str, what: str, **overrides):
    """config_cls(**presets[name]) with the command-line overrides (None means 'not given': the preset's)."""
    if name not in presets:
        raise StageError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    known = {f.name for f in fields(config_cls)}
    bad = sorted(k for k in overrides if k not in known)
    if bad:
        raise StageError(f"unknown {what} options {bad}")
    cfg = config_cls(**presets[name])
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **given) if given else cfg


def truthy(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def config_flags(parser: argparse.ArgumentParser, config_cls, helps: dict[str, str],
                 negative: dict[str, str] | None = None) -> None:
    """One flag per field of the config dataclass (`seq_len` -> `--seq-len`), default None: the preset's, so
    a default is written once, in the preset table. A bool field is `--name` / `--no-name` (the negative's
    name can be changed in `negative`); `--name true|false` works too."""
    types = {"int": int, "float": float, "str": str}
    group = parser.add_argument_group(f"settings ({config_cls.__name__}; left out: the --preset's)")
    for f in fields(config_cls):
        flag, kind = f"--{f.name.replace('_', '-')}", f.type if isinstance(f.type, str) else f.type.__name__
        help_text = helps.get(f.name)
        if kind == "bool":
            group.add_argument(flag, dest=f.name, nargs="?", const=True, type=truthy, metavar="true|false",
                               help=help_text)
            group.add_argument((negative or {}).get(f.name, f"--no-{flag[2:]}"), dest=f.name,
                                action="store_false", help=argparse.SUPPRESS)
        else:
            group.add_argument(flag, dest=f.name, type=types[kind], help=help_text)


def config_overrides(args: argparse.Namespace, config_cls) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(config_cls)}


def multi_host_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", help="Multi-host: host:port of process 0 (or $JAX_COORDINATOR_ADDRESS).")
    parser.add_argument("--num-processes", type=int, help="Multi-host: number of processes.")
    parser.add_argument("--process-id", type=int, help="Multi-host: this process's index.")


def size(text: str) -> int:
    """'500M', '2G', '12345' -> bytes (for byte budgets); argparse's type for such flags."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B")
    try:
        n = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 500M, 2G or 12345") from None
    if n <= 0:  # a budget of nothing would quietly write an empty output over the last one
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive, e.g. 500M")
    return n


def _number(text: str, cast, ok, kind: str, rule: str):
    try:
        x = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}") from None
    if not ok(x):
        raise argparse.ArgumentTypeError(f"{text!r}: must be {rule}")
    return x


def count(text: str) -> int:
    """An integer >= 0 (argparse's type for counts such as --workers, where 0 means 'the default')."""
    return _number(text, int, lambda n: n >= 0, "whole number", "0 or more")


def positive(text: str) -> float:
    """A number > 0 (argparse's type for amounts such as --max-mb)."""
    return _number(text, float, lambda x: 0 < x < float("inf"), "number", "a positive number")


# --- a run directory ------------------------------------------------------------------------------------

def check_resume(saved: dict, now: dict, out: Path, changeable: set[str]) -> None:
    """Refuse to resume `out` when a setting that decides the batches or the math differs from the run's."""
    diff = {k: (saved.get(k), now[k]) for k in now if k not in changeable and saved.get(k) != now[k]}
    if diff:
        listed = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise StageError(f"{out} holds a run with different settings ({listed}); rerun with the same flags to "
                         "resume it, or pass a new --out to start another run")


def jsonl_log(path: Path, enabled: bool = True):
    """log(record): appends one JSON object per line to `path` (log.jsonl); `enabled` is False on every
    process but the first of a multi-host run."""
    def log(record: dict) -> None:
        if enabled:
            with open(path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
    return log


def write_json(path: Path, data: dict) -> None:
    """Write a small JSON file atomically (temp file + rename): a kill never leaves half a marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def completed(out: Path) -> dict | None:
    """The summary in out/complete.json when the stage finished there, else None."""
    return json.loads((out / COMPLETE).read_text()) if (out / COMPLETE).is_file() else None


def newest_model(pattern: str) -> Path | None:
    """The newest finished model of a stage under $NANOCODE_HOME/runs (e.g. 'base-*')."""
    from nanocode.lookup import nanocode_home
    found = [p / "model" for p in (nanocode_home() / "runs").glob(pattern) if (p / "model" / "config.json").is_file()]
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime) if found else None


def publish(model_dir: Path, name: str) -> Path:
    """Link a finished model into $NANOCODE_HOME/models/<name>, where `nanocode chat` looks for the newest."""
    from nanocode.lookup import models_dir
    link = models_dir() / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if not link.is_symlink():
            return link  # a real directory someone put there: leave it alone
        link.unlink()
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return link


# --- MFU ----------------------------------------------------------------------------------------------

# Dense bf16 tensor-core peaks (no sparsity), by device_kind substring, FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
             "L4": 121e12, "A10G": 70e12, "RTX 4090": 165e12, "B200": 2250e12}


@functools.cache
def device_peak_flops(device) -> tuple[float, str]:
    """(peak FLOP/s, what it is) for MFU. CPUs have no published bf16 figure that XLA reaches, so there
    the reference is a measured fp32 matmul: MFU then says how close the step gets to this machine's
    best dense matmul."""
    import jax
    import jax.numpy as jnp
    kind = device.device_kind
    for name, peak in PEAK_BF16.items():
        if name in kind:
            return peak, f"{kind} dense bf16 peak"
    if device.platform == "cpu":
        n = 1024
        a = jnp.ones((n, n), jnp.float32)
        f = jax.jit(lambda a: a @ a)
        f(a).block_until_ready()
        best = 0.0
        for _ in range(5):  # the best of five: other processes on the machine only ever slow it down
            t = time.perf_counter()
            f(a).block_until_ready()
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
        return best, "measured fp32 1024^3 matmul on this CPU"
    return float("nan"), f"{kind}: unknown peak"
