"""Everything the agent loop does is an event; the Textual app, the plain REPL and `nanocode run --json`
consume the same stream. `to_json()` gives the one-object-per-line form of `nanocode run --json`."""
from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TextDelta:
    """A piece of assistant prose as it streams."""
    text: str
    type: Literal["text"] = field(default="text", init=False)


@dataclass(frozen=True)
class ToolCall:
    """The model asked for a tool. `call_id` numbers calls within the session."""
    call_id: int
    name: str
    args: dict[str, str]
    type: Literal["tool_call"] = field(default="tool_call", init=False)


@dataclass(frozen=True)
class Permission:
    """How the call was decided: allow (once), always (this tool for the session), reject, or auto
    (pre-approved by --allow / --yes / an earlier 'always'). A rejection may carry the user's note."""
    call_id: int
    decision: Literal["allow", "always", "reject", "auto"]
    note: str = ""
    type: Literal["permission"] = field(default="permission", init=False)


@dataclass(frozen=True)
class ToolResult:
    """What the tool returned. `output` is the full text shown to the user; the model may see a trimmed copy."""
    call_id: int
    name: str
    ok: bool
    output: str
    type: Literal["tool_result"] = field(default="tool_result", init=False)


@dataclass(frozen=True)
class TurnEnd:
    """The assistant turn is over. reason: done | length | max_steps | interrupted | repeated_failure | context
    | error."""
    reason: str
    text: str = ""  # the turn's final prose (what `nanocode run` prints)
    type: Literal["turn_end"] = field(default="turn_end", init=False)


@dataclass(frozen=True)
class Error:
    """Something went wrong that the user should see (malformed call, model failure, ...)."""
    message: str
    kind: str = "error"
    type: Literal["error"] = field(default="error", init=False)


Event = TextDelta | ToolCall | Permission | ToolResult | TurnEnd | Error


def to_json(event: Event) -> dict:
    d = asdict(event)
    return {"type": d.pop("type"), **d}
