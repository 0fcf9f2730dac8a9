"""Sessions on disk: every conversation, and every rejected tool call as a preference record for DPO.

    $NANOCODE_HOME/sessions/<id>.jsonl               one line: {"messages": [...], "session": id, ...}
    $NANOCODE_HOME/sessions/preferences/<id>.jsonl   one line per rejected call (appended)

A session file is conversation JSONL (DESIGN.md): the SFT loader and eval tools read it as is; the extra
keys (session, workspace, model, created, updated) are metadata. It is rewritten atomically after every
step, so a crash or a kill loses at most the step in flight. Tool outputs are stored as the model saw
them (trimmed to the per-result budget), which is what a training example built from it must contain.

A preference record is the DESIGN.md pair plus the user's note:

    {"messages": [...conversation up to the user's request...],
     "rejected": {"role": "assistant", "content": [...this turn so far..., <the rejected call>]},
     "chosen":   {"role": "assistant", "content": [...this turn so far..., <what the model did next>]} | null,
     "note": "the user's reason, may be empty", "session": id, "created": ...}

Choice for `chosen`: the model's next step after the rejection, when the user accepted it (an approved or
pre-approved call, or the final answer), because that is an alternative the user preferred in the same
context. When the next step was rejected too, malformed or interrupted, `chosen` is null and DPO data
preparation must fill it (e.g. by a revision conditioned on the note, as the critique/revision step does).
"""
import json
import os
import secrets
import tempfile
import time
from pathlib import Path


class SessionError(ValueError):
    pass


def _check_messages(messages) -> None:
    """Raises ValueError/TypeError/KeyError unless `messages` is a DESIGN.md conversation."""
    from nanocode.template import assistant_parts
    if not isinstance(messages, list):
        raise TypeError("'messages' is not a list")
    for m in messages:
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            continue
        if m.get("role") != "assistant":
            raise ValueError(f"a message has role {m.get('role')!r}; expected 'user' or 'assistant'")
        assistant_parts(m)  # raises on an unknown or incomplete part


def sessions_dir(home: Path | None = None) -> Path:
    from nanocode.lookup import nanocode_home
    return (home or nanocode_home()) / "sessions"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Session:
    def __init__(self, directory: Path, id: str | None = None, *, workspace: Path | None = None,
                 model: str = "", messages: list[dict] | None = None, created: str | None = None):
        # ids sort by creation time; the random tail keeps two sessions started in the same second apart
        self.dir = Path(directory)
        self.id = id or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        self.workspace, self.model = workspace, model
        self.messages: list[dict] = messages if messages is not None else []
        self.created = created or _now()

    @property
    def path(self) -> Path:
        return self.dir / f"{self.id}.jsonl"

    @property
    def preferences_path(self) -> Path:
        return self.dir / "preferences" / f"{self.id}.jsonl"

    @classmethod
    def new(cls, home: Path | None = None, **kw) -> "Session":
        return cls(sessions_dir(home), **kw)

    def fresh(self) -> "Session":
        """A new, empty session in the same place (for /clear)."""
        return Session(self.dir, workspace=self.workspace, model=self.model)

    def save(self, messages: list[dict]) -> None:
        self.messages = messages
        if not messages:
            return  # nothing said yet: no file
        record = {"messages": messages, "session": self.id, "workspace": str(self.workspace or ""),
                  "model": self.model, "created": self.created, "updated": _now()}
        _atomic_write(self.path, json.dumps(record, ensure_ascii=False) + "\n")

    def add_preference(self, record: dict) -> None:
        record = {**record, "session": self.id, "created": _now()}
        self.preferences_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.preferences_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, id: str | None = None, home: Path | None = None) -> "Session":
        """Session `id` (or a unique prefix of it); the most recently updated one when id is None."""
        directory = sessions_dir(home)
        files = sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
        if not files:
            raise SessionError(f"no saved sessions in {directory}; start one with `nanocode chat`")
        if id is None:
            path = files[-1]
        else:
            matches = [p for p in files if p.stem == id] or [p for p in files if p.stem.startswith(id)]
            if not matches:
                recent = ", ".join(p.stem for p in files[-5:][::-1])
                raise SessionError(f"no session {id!r} in {directory}; recent sessions: {recent}")
            if len(matches) > 1:
                raise SessionError(f"{id!r} matches {len(matches)} sessions "
                                   f"({', '.join(p.stem for p in matches[:5])}); give more of the id")
            path = matches[0]
        try:
            record = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
            messages = record["messages"]
            _check_messages(messages)
        except RecursionError:  # JSON nested thousands deep: no session nanocode wrote
            raise SessionError(f"{path} is not a session file (its JSON is nested too deeply to read); move it "
                               "away or pick another id") from None
        except (OSError, IndexError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise SessionError(f"{path} is not a session file ({e}); move it away or pick another id") from e
        ws = record.get("workspace")
        return cls(directory, path.stem, workspace=Path(ws) if ws else None, model=record.get("model", ""),
                   messages=messages, created=record.get("created"))

    @staticmethod
    def recent(home: Path | None = None, n: int = 10) -> list[Path]:
        directory = sessions_dir(home)
        if not directory.is_dir():
            return []
        return sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)[:n]
