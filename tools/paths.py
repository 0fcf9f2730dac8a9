"""Workspace confinement: turn a path the model wrote into a real path inside the workspace, or refuse it."""
import difflib
import os
from pathlib import Path, PurePosixPath

from tools.result import ToolError


def shown(path: str) -> str:
    """The path as messages show it: relative, normalised, forward slashes ("./src//a.py" -> "src/a.py")."""
    return PurePosixPath(os.path.normpath(path.replace("\\", "/"))).as_posix() if path else "."


def resolve(workspace: Path, path: str) -> Path:
    """The real (symlink-free) absolute path that `path` names, provided it lies inside the workspace.
    Resolving first and checking after is what makes `..`, absolute paths and symlinks pointing out all
    fail the same single test. Reads and writes then go to the resolved path, so an Edit through an
    in-workspace symlink changes its target and never replaces the link."""
    if not path.strip():
        raise ToolError("the path is empty; give a path relative to the workspace, e.g. src/main.py")
    if "\x00" in path:
        raise ToolError(f"the path {path!r} contains a NUL character; give a plain relative path")
    root = workspace.resolve()
    if os.path.isabs(path):
        hint = ""
        if Path(os.path.normpath(path)).is_relative_to(root):
            hint = f" Use {Path(os.path.normpath(path)).relative_to(root).as_posix() or '.'!r} instead."
        raise ToolError(f"absolute paths are not allowed: {path}. Paths are relative to the workspace root.{hint}")
    try:
        target = (root / path).resolve()
        target.exists()  # raises for what resolve() lets through, such as a name too long
    except RuntimeError:  # Python 3.11-3.12; 3.13 raises OSError(ELOOP)
        raise ToolError(f"{shown(path)} is a symlink loop; give a path to a real file") from None
    except OSError as e:
        raise ToolError(f"cannot use the path {shown(path)[:200]}: {e.strerror or e}") from None
    if not target.is_relative_to(root):
        via = "a symlink that points" if not os.path.normpath(path).startswith("..") else "it"
        raise ToolError(f"{shown(path)} is outside the workspace ({via} leads out of it); "
                        "only files inside the workspace can be used")
    return target


def relative(workspace: Path, target: Path) -> str:
    """`target` (already resolved and inside the workspace) as a workspace-relative posix path."""
    return target.relative_to(workspace.resolve()).as_posix() or "."


def missing_message(target: Path, path: str) -> str:
    """Why `path` does not exist, with the closest names in its directory so the model can retry at once."""
    parent = target.parent
    while not parent.is_dir():  # climb to the deepest directory that exists
        parent = parent.parent
    if parent != target.parent:
        directory = shown(os.path.dirname(shown(path)))
        return f"{shown(path)} does not exist: its directory {directory} does not exist either."
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        names = []
    close = difflib.get_close_matches(target.name, names, n=3, cutoff=0.6)
    where = os.path.dirname(shown(path))
    hint = f" Did you mean {', '.join(repr(f'{where}/{n}' if where else n) for n in close)}?" if close else ""
    return f"{shown(path)} does not exist.{hint} Grep or Bash (ls, find) can locate files."


def directory_message(target: Path, path: str, limit: int = 40) -> str:
    """A directory given where a file was expected: say so and list what it holds (sub-directories end in /)."""
    try:
        entries = sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in os.scandir(target))
    except OSError as e:
        return f"{shown(path)} is a directory, not a file (cannot list it: {e.strerror})."
    listing = ", ".join(entries[:limit]) + (f", ... ({len(entries) - limit} more)" if len(entries) > limit else "")
    return f"{shown(path)} is a directory, not a file. It contains: {listing or '(nothing)'}"
