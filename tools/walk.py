"""Which files Grep searches: every regular file under a directory of the workspace, except `.git`, symlinks
(never followed, as rg and grep -r do) and what the workspace's .gitignore files ignore (git semantics, via pathspec).
Only .gitignore files inside the workspace count: not those above it, nor .git/info/exclude or global excludes.
When ripgrep is on PATH it lists the files (same rules, its own fast gitignore engine); otherwise Python walks."""
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

# (directory relative to the workspace, "" for the root; the rules of the .gitignore in it)
Rules = list[tuple[str, "GitIgnoreSpec"]]


def _load_gitignore(path: str) -> "GitIgnoreSpec":
    import pathspec  # imported when first needed: `import tools` must work where only the ML stack is installed

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return pathspec.GitIgnoreSpec.from_lines([])
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception:  # a malformed line: git skips it, so keep the lines that parse
        good = []
        for line in lines:
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
                good.append(line)
            except Exception:
                pass
        return pathspec.GitIgnoreSpec.from_lines(good)


def _rules_in(abs_dir: str, rel_dir: str, rules: Rules) -> Rules:
    """`rules` plus those of the directory's own .gitignore. A symlinked .gitignore is not read (git ignores those
    too, and it could point outside the workspace)."""
    gitignore = os.path.join(abs_dir, ".gitignore")
    if os.path.isfile(gitignore) and not os.path.islink(gitignore):
        return rules + [(rel_dir, _load_gitignore(gitignore))]
    return rules


def is_ignored(rules: Rules, rel: str, is_dir: bool) -> bool:
    """git's precedence: the deepest .gitignore with a matching pattern decides; within a file the last match wins."""
    for base, spec in reversed(rules):
        sub = rel[len(base) + 1:] if base else rel
        decision = spec.check_file(sub + "/" if is_dir else sub).include
        if decision is not None:
            return decision
    return False


def ignored_ancestor(root: Path, top: Path) -> tuple[str | None, Rules]:
    """(the first directory on the way from the workspace root down to `top` that is .git or ignored, else None;
    the rules of the .gitignore files strictly above `top`, which the walk below it starts from)."""
    rules: Rules = []
    rel = ""
    for part in top.relative_to(root).parts:
        rules = _rules_in(str(root / rel), rel, rules)
        rel = f"{rel}/{part}" if rel else part
        if part == ".git" or is_ignored(rules, rel, is_dir=True):
            return rel, rules
    return None, rules


def _python_files(root: Path, top: Path, rules: Rules) -> list[str]:
    start = top.relative_to(root).as_posix()
    start = "" if start == "." else start
    found, stack = [], [(str(top), start, rules)]
    while stack:  # an explicit stack: a directory tree thousands deep must not hit the recursion limit
        abs_dir, rel_dir, rules = stack.pop()
        try:
            entries = list(os.scandir(abs_dir))
        except OSError:
            continue  # unreadable directory: skip it, as rg does
        rules = _rules_in(abs_dir, rel_dir, rules)
        for entry in entries:
            if entry.name == ".git" or entry.is_symlink():
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if not is_ignored(rules, rel, is_dir=True):
                    stack.append((entry.path, rel, rules))
            elif entry.is_file(follow_symlinks=False) and not is_ignored(rules, rel, is_dir=False):
                found.append(rel)
    return found


def _rg_files(rg: str, root: Path) -> list[str] | None:
    """rg's list of the workspace's files under the same rules, or None if rg fails (then Python walks).
    It always lists from the workspace root so that every .gitignore between the root and the searched
    directory applies; --no-ignore-parent stops it reading ignore files above the workspace."""
    command = [rg, "--files", "--hidden", "--no-config", "--no-messages", "--null", "--no-require-git",
               "--no-ignore-parent", "--no-ignore-global", "--no-ignore-exclude", "--no-ignore-dot", "--glob", "!.git"]
    try:
        done = subprocess.run(command, cwd=root, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):  # 1: no files at all
        return None
    names = (os.fsdecode(raw) for raw in done.stdout.split(b"\0") if raw)
    return [name.removeprefix("./") for name in names]


def list_files(root: Path, top: Path, rules: Rules, use_rg: bool = True) -> list[str]:
    """Workspace-relative posix paths of the files to search under directory `top`, sorted.
    `rules` are those of the .gitignore files above `top` (from ignored_ancestor)."""
    rg = shutil.which("rg") if use_rg else None
    files = _rg_files(rg, root) if rg else None
    if files is None:
        files = _python_files(root, top, rules)
    else:
        prefix = top.relative_to(root).as_posix()
        if prefix != ".":
            files = [f for f in files if f.startswith(prefix + "/")]
        files = [f for f in files if os.path.isfile(root / f) and not os.path.islink(root / f)]
    return sorted(files)
