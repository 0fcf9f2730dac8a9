"""Start-up shared by every front end (`nanocode chat`, `chat --plain`, `nanocode run`).

Two phases, so that a front end can show itself before the slow part:
- `prepare(...)`: the checks that can fail with a clear message: find the model directory, check the
  --allow list, the --sandbox setting and the workspace, open (or resume) the session. Raises SetupError.
  (A second or two: finding the model imports nothing heavy: nanocode.lookup has no JAX.)
- `Setup.load()`: load the weights and tokenizer, read the project memory (AGENTS.md, agent/memory.py), build
  the sampler and the Agent (seconds: JAX import and compilation). `Agent.warm_up()` then compiles the first
  reply's programs ahead of the user's Enter.
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.memory import memory_files
from agent.permissions import Permissions, PermissionsError, parse_allow, parse_sandbox
from agent.session import Session, SessionError
from tools import sandbox as tools_sandbox


class SetupError(RuntimeError):
    """Start-up cannot go on; the message says why and what to run."""


@dataclass
class Setup:
    model_dir: Path
    workspace: Path
    permissions: Permissions
    session: Session | None
    max_steps: int = 20
    temperature: float = 0.0
    record_preferences: bool = True
    memory: bool = True  # read AGENTS.md into the prompt (agent/memory.py)
    notes: list[str] = field(default_factory=list)  # lines for the start-up banner
    memory_note: str = ""  # why AGENTS.md was found but not read (also in notes)

    @property
    def model_name(self) -> str:
        return self.model_dir.name

    def load(self):
        """The Agent over the real model (slow: imports JAX, reads the weights). Front ends then call
        `agent.warm_up()` in the background to compile what a first request runs."""
        from agent.loop import Agent
        from agent.memory import load_memory
        from agent.source import SamplerSource
        from nanocode.checkpoint import CheckpointError, load_model
        from nanocode.sampler import Sampler

        try:
            model, tok, _info = load_model(self.model_dir)
        except CheckpointError as e:
            raise SetupError(str(e)) from e
        source = SamplerSource(Sampler(model), context_len=model.config.seq_len)
        return Agent(source, tok, self.workspace, self.permissions, max_steps=self.max_steps,
                     session=self.session, temperature=self.temperature,
                     record_preferences=self.record_preferences,
                     memory=load_memory(self.workspace, tok, model.config.seq_len) if self.memory else None)


def trained_with_notes(model_dir: Path) -> bool:
    try:
        return bool(json.loads((model_dir / "config.json").read_text()).get("meta", {}).get("project_notes"))
    except (OSError, ValueError, AttributeError):
        return False  # loading the model says what is wrong with it


def prepare(*, model: Path | None = None, cwd: Path | None = None, allow: str | list[str] | None = None,
            yes: bool = False, resume: bool = False, session_id: str | None = None, max_steps: int = 20,
            temperature: float = 0.0, save_session: bool = True, record_preferences: bool = True,
            home: Path | None = None, sandbox: bool | str = True, memory: bool | None = None) -> Setup:
    """sandbox: True / "on" (default) runs Bash in the OS sandbox where the machine has one; False / "off" not.
    memory: read AGENTS.md into the prompt; None (default): if the model was trained with project notes in its
    prompts (its config.json says `"project_notes": true` in meta). A model that never saw notes there is
    thrown off by them: the one shipped on 2026-12-04 answered "where is slugify defined?" right without an
    AGENTS.md and grepped for `sure` with a two-line one (training/LOG.md)."""
    from nanocode.lookup import CheckpointError, dangling_links, find_model, models_dir

    if session_id is not None and not resume:
        raise SetupError(f"a session id ({session_id!r}) was given without --resume; "
                         f"use --resume {session_id}")
    if max_steps < 1:
        raise SetupError(f"--max-steps must be at least 1, got {max_steps}")
    workspace = (cwd or Path.cwd()).expanduser()
    if not workspace.is_dir():
        raise SetupError(f"--cwd {workspace} is not a directory; give the repository to work in")
    workspace = workspace.resolve()
    try:
        permissions = Permissions(parse_allow(allow), yes=yes, sandbox=parse_sandbox(sandbox))
    except PermissionsError as e:
        raise SetupError(str(e)) from None
    try:
        model_dir = find_model(model)
    except CheckpointError as e:  # its message names the command that trains or points to a model
        raise SetupError(str(e)) from None
    notes = [permissions.summary(), tools_sandbox.status(permissions.sandbox)]
    searched = model is None and not os.environ.get("NANOCODE_MODEL")  # find_model looked in models/
    if searched and (broken := dangling_links(models_dir())):
        notes.append(f"skipped {len(broken)} link{'s' * (len(broken) > 1)} in {models_dir()} to models that no "
                     f"longer exist ({', '.join(p.name for p in broken[:3])}{', ...' * (len(broken) > 3)})")
    memory_note = ""
    if memory is None:
        memory = trained_with_notes(Path(model_dir))
        if not memory and (found := memory_files(workspace)):
            names = ", ".join(p.name for p in found)
            memory_note = (f"{names} not read: this model was not trained with project notes in its prompt, and "
                           "they throw it off; --memory reads them anyway")
            notes.append(memory_note)
    session = None
    if resume:
        try:
            session = Session.load(session_id, home)
        except SessionError as e:
            raise SetupError(str(e)) from None
        notes.append(f"resumed session {session.id} ({len(session.messages)} messages)")
        if session.workspace and Path(session.workspace) != workspace:
            notes.append(f"note: that session worked in {session.workspace}; this one works in {workspace}")
    elif save_session:
        session = Session.new(home, workspace=workspace, model=str(model_dir))
    return Setup(Path(model_dir), workspace, permissions, session, max_steps=max_steps, temperature=temperature,
                 record_preferences=record_preferences, memory=memory, notes=notes, memory_note=memory_note)
