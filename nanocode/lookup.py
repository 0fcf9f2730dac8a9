"""Finding the model to load, without importing JAX: `nanocode chat` runs this before anything heavy, so
the app is up in a fraction of a second (importing JAX, flax and orbax alone took 3 s on the 2-core CPU).
"""
import os
from pathlib import Path

CONFIG = "config.json"
# What to run when no model exists; the message of find_model prints it.
TRAIN_COMMAND = "nanocode train speedrun --preset cpu"


class CheckpointError(RuntimeError):
    pass


def nanocode_home() -> Path:
    """Where trained models, runs and caches live: $NANOCODE_HOME, default ~/.cache/nanocode."""
    return Path(os.environ.get("NANOCODE_HOME") or Path.home() / ".cache" / "nanocode").expanduser()


def models_dir() -> Path:
    """Where training stages save finished models: $NANOCODE_HOME/models/<run>/ (find_model looks here)."""
    return nanocode_home() / "models"


def shipped_dir() -> Path:
    """`checkpoints/` at the repository root, next to the installed package."""
    return Path(__file__).resolve().parent.parent / "checkpoints"


# --- lookup --------------------------------------------------------------------------------------

def _is_model_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def _config_mtime(path: Path) -> float | None:
    """When the model's config.json was written; None if it is gone (deleted, or behind a dangling link)."""
    try:
        return (path / CONFIG).stat().st_mtime
    except OSError:
        return None


def dangling_links(root: Path) -> list[Path]:
    """Links directly in root whose target no longer exists: a run directory deleted after its model was
    published (training links finished models into models/); find_model skips them."""
    try:
        return sorted(p for p in root.iterdir() if p.is_symlink() and not p.exists())
    except OSError:
        return []


def _newest_under(root: Path, max_depth: int = 3) -> Path | None:
    """The model directory under root (itself or up to max_depth levels down) with the newest config.json.
    Dangling links and directories that vanish meanwhile are skipped (is_dir() and stat() follow links)."""
    found: list[tuple[float, Path]] = []
    level = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for d in level:
            if _is_model_dir(d) and (mtime := _config_mtime(d)) is not None:
                found.append((mtime, d))
                continue  # a model directory's subfolders (params/) hold no other models
            try:
                next_level.extend(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                pass
        level = next_level
    return max(found, key=lambda pair: pair[0])[1] if found else None


def find_model(explicit: str | os.PathLike | None = None) -> Path:
    """The model to load, in DESIGN.md's order: `--model PATH`, $NANOCODE_MODEL, the newest model trained
    under $NANOCODE_HOME (models/), the one shipped in `checkpoints/`."""
    for source, value in (("--model", explicit), ("$NANOCODE_MODEL", os.environ.get("NANOCODE_MODEL"))):
        if value:
            path = Path(value).expanduser()
            if not _is_model_dir(path):
                raise CheckpointError(f"{source} {value}: no model there ({path / CONFIG} is missing); "
                                      f"give a directory written by nanocode training, or train one with "
                                      f"`{TRAIN_COMMAND}`")
            return path
    for root in (models_dir(), shipped_dir()):
        if root.is_dir():
            found = _newest_under(root)
            if found is not None:
                return found
    broken = dangling_links(models_dir())
    gone = (f" (skipped: {', '.join(p.name for p in broken[:3])}{', ...' * (len(broken) > 3)}, "
            f"link{'s' * (len(broken) > 1)} to models that no longer exist)") if broken else ""
    raise CheckpointError(
        "no model found: none given with --model or $NANOCODE_MODEL, none trained under "
        f"{models_dir()}{gone}, none shipped in {shipped_dir()}.\n"
        f"Train one (the whole pipeline on a laptop CPU, about 30 minutes):  {TRAIN_COMMAND}\n"
        "or point to one:  nanocode chat --model PATH   (or export NANOCODE_MODEL=PATH)")
