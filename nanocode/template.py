"""The chat and tool-call template: conversation JSON (DESIGN.md) <-> token ids.

    <|bos|><|user_start|>...<|user_end|><|assistant_start|>prose
    <|tool_call_start|>Grep<|tool_arg|>pattern<|tool_val|>def f<|tool_call_end|>
    <|tool_result_start|>a.py:1:def f():<|tool_result_end|>more prose<|assistant_end|>

The loss mask is 1 exactly on what the model writes (assistant prose, tool calls, <|assistant_end|>)
and 0 on what it is given (bos, user turns, <|assistant_start|>, tool results).
"""
from collections.abc import Mapping
from dataclasses import dataclass

from nanocode.tokenizer import Tokenizer
from tools.spec import SPECS, ToolSpec

# A failed tool result is shown to the model with this prefix; the model learns to read it.
ERROR_PREFIX = "error: "
STOP_TOKENS = ("<|tool_call_end|>", "<|assistant_end|>")


def declined_message(note: str) -> str:
    """The tool result the model reads when the user rejects its call (the agent writes it at run time,
    synthetic data writes the same words so training matches inference)."""
    note = note.strip()
    return f"the user declined this call and said: {note}" if note else "the user declined this call"


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ToolCallPart:
    name: str
    args: dict[str, str]


@dataclass(frozen=True)
class ToolResultPart:
    ok: bool
    output: str


Part = TextPart | ToolCallPart | ToolResultPart


class ToolCallError(ValueError):
    """A malformed tool call in generated ids. `kind` names the problem; `parts` holds what parsed before it."""

    def __init__(self, kind: str, message: str, parts: list[Part] | None = None):
        super().__init__(message)
        self.kind = kind
        self.parts = parts or []


# --- conversation JSON <-> parts ------------------------------------------------------------------

def part_from_json(d: dict) -> Part:
    kind = d.get("type")
    if kind == "text":
        return TextPart(str(d["text"]))
    if kind == "tool_call":
        return ToolCallPart(str(d["name"]), {str(k): str(v) for k, v in d.get("args", {}).items()})
    if kind == "tool_result":
        return ToolResultPart(bool(d["ok"]), str(d["output"]))
    raise ValueError(f"unknown content part type {kind!r}; expected text, tool_call or tool_result")


def part_to_json(p: Part) -> dict:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, ToolCallPart):
        return {"type": "tool_call", "name": p.name, "args": dict(p.args)}
    return {"type": "tool_result", "ok": p.ok, "output": p.output}


def assistant_parts(message: dict) -> list[Part]:
    content = message["content"]
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    return [p if isinstance(p, (TextPart, ToolCallPart, ToolResultPart)) else part_from_json(p) for p in content]


# --- rendering ------------------------------------------------------------------------------------

class _Builder:
    """Accumulates ids and the loss mask side by side."""

    def __init__(self, tok: Tokenizer):
        self.tok, self.ids, self.mask = tok, [], []

    def special(self, name: str, trained: bool) -> None:
        self.ids.append(self.tok.special(name))
        self.mask.append(int(trained))

    def text(self, text: str, trained: bool) -> None:
        ids = self.tok.encode(text)
        self.ids.extend(ids)
        self.mask.extend([int(trained)] * len(ids))

    def part(self, p: Part) -> None:
        if isinstance(p, TextPart):
            self.text(p.text, True)
        elif isinstance(p, ToolCallPart):
            self.special("tool_call_start", True)
            self.text(p.name, True)
            for name, value in p.args.items():
                self.special("tool_arg", True)
                self.text(name, True)
                self.special("tool_val", True)
                self.text(value, True)
            self.special("tool_call_end", True)
        else:
            self.special("tool_result_start", False)
            self.text(p.output if p.ok else ERROR_PREFIX + p.output, False)
            self.special("tool_result_end", False)

    def message(self, m: dict, finished: bool = True) -> None:
        if m["role"] == "user":
            self.special("user_start", False)
            self.text(m["content"], False)
            self.special("user_end", False)
        elif m["role"] == "assistant":
            self.special("assistant_start", False)
            for p in assistant_parts(m):
                self.part(p)
            if finished:
                self.special("assistant_end", True)
        else:
            raise ValueError(f"unknown role {m['role']!r}; expected 'user' or 'assistant'")


def render_conversation(messages: list[dict], tok: Tokenizer, notes: str = "") -> tuple[list[int], list[int]]:
    """A whole conversation for training: (ids, loss_mask), same length. `notes`: project memory, where
    the agent puts it (notes_ids), never trained on."""
    b = _Builder(tok)
    b.special("bos", False)
    for m in messages:
        b.message(m)
    if not notes:
        return b.ids, b.mask
    extra = notes_ids(notes, tok)
    return b.ids[:2] + extra + b.ids[2:], b.mask[:2] + [0] * len(extra) + b.mask[2:]


def notes_text(files: list[tuple[str, str]]) -> str:
    """Project memory as the model reads it: each file (name relative to the repository root, text)
    under a 'Notes from NAME:' line, root first (agent/memory.py reads the files)."""
    return "\n\n".join(f"Notes from {name}:\n{body.strip()}" for name, body in files)


def notes_ids(notes: str, tok: Tokenizer) -> list[int]:
    """The notes' ids, spliced in right after the first <|user_start|> of a prompt: encoded as a piece of
    their own, like every text part, so the same notes give the same ids in training and in the agent."""
    return tok.encode(notes + "\n\n")


def render_prompt(messages: list[dict], tok: Tokenizer) -> list[int]:
    """Ids the model continues from. After a user turn: opens a new assistant turn. When the last message
    is an assistant turn in progress (prose, a call and its result so far), it is left open to continue."""
    b = _Builder(tok)
    b.special("bos", False)
    for m in messages[:-1]:
        b.message(m)
    last = messages[-1]
    if last["role"] == "assistant":
        b.message(last, finished=False)
    else:
        b.message(last)
        b.special("assistant_start", False)
    return b.ids


def render_tool_result(ok: bool, output: str, tok: Tokenizer) -> list[int]:
    b = _Builder(tok)
    b.part(ToolResultPart(ok, output))
    return b.ids


def stop_ids(tok: Tokenizer) -> tuple[int, ...]:
    return tuple(tok.special(t) for t in STOP_TOKENS)


# --- parsing generated ids ------------------------------------------------------------------------

def parse_tool_call(ids: list[int], tok: Tokenizer, specs: Mapping[str, ToolSpec] = SPECS) -> ToolCallPart:
    """Parses the ids strictly between <|tool_call_start|> and <|tool_call_end|>. `specs`: the tools a call
    may name (ours by default; `nanocode serve` passes the ones a request declares)."""
    arg, val = tok.special("tool_arg"), tok.special("tool_val")
    # Split into segments, each led by the special token that opened it (None for the name).
    segments: list[tuple[int | None, list[int]]] = [(None, [])]
    for i in ids:
        if i in (arg, val):
            segments.append((i, []))
        elif i in tok.special_ids:
            raise ToolCallError("stray_token", f"the tool call contains {tok.decode([i])}, which does not "
                                "belong inside a call; write Name<|tool_arg|>arg<|tool_val|>value")
        else:
            segments[-1][1].append(i)
    name = tok.decode(segments[0][1]).strip()
    if not name:
        raise ToolCallError("missing_name", "the tool call has no tool name; start it with one of "
                            + ", ".join(specs))
    spec = specs.get(name)
    if spec is None:
        raise ToolCallError("unknown_tool", f"there is no tool called {name!r}; the tools are "
                            + ", ".join(specs))
    args: dict[str, str] = {}
    pending: str | None = None
    for lead, seg in segments[1:]:
        text = tok.decode(seg)
        if lead == arg:
            if pending is not None:
                raise ToolCallError("missing_value", f"{name} argument {pending!r} has no <|tool_val|> value")
            pending = text.strip()
            if pending not in spec.arg_names:
                raise ToolCallError("unknown_argument", f"{name} has no argument {pending!r}; its arguments "
                                    f"are {', '.join(spec.arg_names)}")
            if pending in args:
                raise ToolCallError("duplicate_argument", f"{name} argument {pending!r} is given twice")
        else:
            if pending is None:
                raise ToolCallError("value_without_name", f"a <|tool_val|> value in the {name} call has no "
                                    "<|tool_arg|> name before it")
            args[pending], pending = text, None
    if pending is not None:
        raise ToolCallError("missing_value", f"{name} argument {pending!r} has no <|tool_val|> value")
    missing = [a for a in spec.required if a not in args]
    if missing:
        raise ToolCallError("missing_argument", f"{name} needs the argument(s) {', '.join(missing)}")
    return ToolCallPart(name, args)


def parse_assistant(ids: list[int], tok: Tokenizer, allow_results: bool = True) -> tuple[list[Part], bool]:
    """Parses assistant ids (after <|assistant_start|>) into parts. Returns (parts, ended) where ended says
    <|assistant_end|> was reached (ids after it are ignored). Raises ToolCallError for a malformed call,
    carrying the parts before it. With allow_results=False (freshly generated ids) a tool result written by
    the model itself is an error: only the harness writes results."""
    s = {name: tok.special(name) for name in ("assistant_end", "tool_call_start", "tool_call_end",
                                              "tool_result_start", "tool_result_end")}
    parts: list[Part] = []
    text: list[int] = []

    def flush():
        if text:
            parts.append(TextPart(tok.decode(text)))
            text.clear()

    i, n = 0, len(ids)
    while i < n:
        t = ids[i]
        if t == s["assistant_end"]:
            flush()
            return parts, True
        if t == s["tool_call_start"]:
            flush()
            try:
                end = ids.index(s["tool_call_end"], i + 1)
            except ValueError:
                raise ToolCallError("truncated", "the tool call was cut off before <|tool_call_end|>; "
                                    "write the whole call again", parts) from None
            try:
                parts.append(parse_tool_call(ids[i + 1:end], tok))
            except ToolCallError as e:
                e.parts = parts
                raise
            i = end + 1
            continue
        if t == s["tool_result_start"]:
            flush()
            if not allow_results:
                raise ToolCallError("model_wrote_result", "only the harness writes tool results; "
                                    "end the call with <|tool_call_end|> and wait", parts)
            try:
                end = ids.index(s["tool_result_end"], i + 1)
            except ValueError:
                raise ToolCallError("truncated", "a tool result is not closed", parts) from None
            out = tok.decode(ids[i + 1:end])
            ok = not out.startswith(ERROR_PREFIX)
            parts.append(ToolResultPart(ok, out if ok else out[len(ERROR_PREFIX):]))
            i = end + 1
            continue
        if t in tok.special_ids:
            flush()
            raise ToolCallError("stray_token", f"{tok.decode([t])} cannot appear in an assistant turn", parts)
        text.append(t)
        i += 1
    flush()
    return parts, False
