"""Project memory: AGENTS.md (the file Codex CLI and opencode read) and NANOCODE.md, in every directory from the
repository root down to the working directory, read into the conversation when the agent starts.

The model reads them at the head of the first user turn of every prompt (agent/context.py puts them there,
after any trimming, so a long conversation never pushes them out); sessions do not store them, so a resumed
session reads the files as they are now. Root first: the repository's general notes, then the more specific
ones of the directories below it.

The budget is a sixth of the model's context: 341 tokens of the shipped model's 2048. Of those 2048, 512 are
kept for the reply, which leaves a 1536-token prompt; one tool result may take 512 of it (agent/loop.py), so
after 341 tokens of notes about 680 remain for the request, the model's calls and the rest of the turn. A
typical AGENTS.md (how to build, test and lint, a few conventions) fits in 150-300 tokens; a bigger budget
would crowd out the tool results the model works from. A longer file is cut to its head, at a line end, and
the start-up notice says so.
"""
from dataclasses import dataclass
from pathlib import Path

from nanocode.template import notes_text
from nanocode.tokenizer import Tokenizer

NAMES = ("AGENTS.md", "NANOCODE.md")
_MAX_FILE_BYTES = 64 * 1024  # far more than any budget keeps; a huge file is not read whole for nothing


def budget_for(context_len: int) -> int:
    return max(64, context_len // 6)


@dataclass(frozen=True)
class Memory:
    text: str               # what the model reads
    files: tuple[str, ...]  # the files it came from, relative to the repository root
    tokens: int             # tokens of `text`
    total: int              # tokens the files would have taken whole
    budget: int

    @property
    def cut(self) -> bool:
        return self.total > self.tokens

    def notice(self) -> str:
        names = ", ".join(self.files)
        if self.cut:
            return (f"using {names} ({self.tokens} of {self.total} tokens: only the head fits the model's "
                    f"{self.budget}-token budget for it; shorten it to keep the rest)")
        return f"using {names} ({self.tokens} tokens)"


def repository_root(workspace: Path) -> Path:
    """The nearest directory at or above the workspace with a .git (a directory, or a file in a worktree);
    the workspace itself when there is none."""
    workspace = workspace.resolve()
    for d in (workspace, *workspace.parents):
        if (d / ".git").exists():
            return d
    return workspace


def memory_files(workspace: Path) -> list[Path]:
    """AGENTS.md and NANOCODE.md from the repository root down to the workspace, root first."""
    workspace = workspace.resolve()
    root = repository_root(workspace)
    dirs = [workspace, *workspace.parents]
    dirs = dirs[:dirs.index(root) + 1][::-1]
    return [d / name for d in dirs for name in NAMES if (d / name).is_file()]


def _head(tok: Tokenizer, text: str, budget: int) -> str:
    """The longest head of `text` within `budget` tokens, ending on a line end when that keeps half of it."""
    data = tok.decode_bytes(tok.encode(text)[:budget])
    nl = data.rfind(b"\n")
    if nl >= len(data) // 2:
        data = data[:nl]
    head = data.decode("utf-8", "ignore")
    while head and len(tok.encode(head)) > budget:  # re-encoding a cut can merge differently; rare
        head = head[:-1]
    return head


def load_memory(workspace: Path, tok: Tokenizer, context_len: int) -> Memory | None:
    """The project memory for a workspace, within the budget; None when there are no such files (or none can
    be read as text: a broken notes file must not stop the agent)."""
    root = repository_root(workspace)
    pieces = []
    for path in memory_files(workspace):
        try:
            with path.open("rb") as f:
                body = f.read(_MAX_FILE_BYTES).decode("utf-8", "replace").strip()
        except OSError:
            continue
        if body:
            pieces.append((path.relative_to(root).as_posix(), body))
    if not pieces:
        return None
    names = [name for name, _ in pieces]
    budget = budget_for(context_len)
    whole = notes_text(pieces)
    total = len(tok.encode(whole))
    text = whole if total <= budget else _head(tok, whole, budget)
    return Memory(text, tuple(names), len(tok.encode(text)), total, budget)
