"""OpenAI chat-completion requests -> nanocode's token protocol (DESIGN.md), for `nanocode serve`.

Our template has user and assistant turns only, and the model knows its own four tools without being told
about them. So:
- system (and developer) messages go at the head of the first user turn: there is no system turn;
- the request's `tools` that the model does not already know (anything but Read/Edit/Grep/Bash with our
  arguments) are described in plain text there too; a call is still written in the special-token form;
- an assistant message with `tool_calls`, the `tool` messages answering it and the assistant message after
  them are ONE assistant turn here (prose, call, result, call, result, prose), as the model was trained.
Argument values are strings in our protocol: JSON arguments are flattened to text on the way in, and turned
back into JSON with the tool's JSON-schema types on the way out (nanocode/serve/reply.py).

Everything a client can get wrong raises RequestError (-> a 400 in OpenAI's error shape), never anything else.
"""
import json
import math
import re
from dataclasses import dataclass, field

from nanocode.template import TextPart, ToolCallPart, ToolResultPart, render_prompt
from nanocode.tokenizer import Tokenizer
from tools.spec import SPECS, ArgSpec, ToolSpec

# OpenAI's rule for function names; it also keeps a name free of our special tokens' text.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_STOP = 4  # OpenAI takes up to four stop sequences
DEFAULT_TEMPERATURE = 1.0  # OpenAI's default when a request gives none


class RequestError(ValueError):
    """A request we cannot serve, with what OpenAI's error object carries."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.param, self.code, self.status, self.kind = param, code, status, kind


@dataclass(frozen=True)
class Tool:
    """A function a request declares: our ToolSpec (what the parser checks) plus each argument's JSON type."""
    spec: ToolSpec
    types: dict[str, str]  # argument -> JSON-schema type ("string", "integer", "number", "boolean", ...)

    @property
    def known(self) -> bool:
        """One of our own tools with our arguments: the model was trained on it, so it needs no description."""
        ours = SPECS.get(self.spec.name)
        return ours is not None and set(ours.arg_names) == set(self.spec.arg_names)


@dataclass
class ChatRequest:
    prompt: list[int]
    max_tokens: int | None
    temperature: float
    top_p: float | None
    top_k: int | None
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    tools: dict[str, Tool] = field(default_factory=dict)  # what the model may call; empty: no calls
    forced: list[int] = field(default_factory=list)  # ids of a call the prompt already opened (tool_choice)


# --- small checks ---------------------------------------------------------------------------------

def _number(body: dict, name: str, lo: float, hi: float, default=None, integer: bool = False):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise RequestError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}", name)
    if not (lo <= value <= hi) or math.isnan(value):
        raise RequestError(f"{name} must be between {lo} and {hi}, got {value}", name)
    return int(value) if integer else float(value)


def _text(content, where: str) -> str:
    """A message's content as text: a string, or a list of text parts (images and audio are refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for k, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"{where}.content[{k}] is a {kind!r} part; this model reads text only",
                                   f"{where}.content")
            if not isinstance(part.get("text"), str):
                raise RequestError(f"{where}.content[{k}].text must be a string", f"{where}.content")
            out.append(part["text"])
        return "".join(out)
    raise RequestError(f"{where}.content must be a string or a list of text parts", f"{where}.content")


def flatten_arguments(arguments, where: str) -> dict[str, str]:
    """A call's JSON `arguments` (a string holding an object) as our string values."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise RequestError(f"{where}.function.arguments is not valid JSON", f"{where}.function.arguments") from None
    if not isinstance(arguments, dict):
        raise RequestError(f"{where}.function.arguments must be a JSON object", f"{where}.function.arguments")
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in arguments.items()}


# --- tools ----------------------------------------------------------------------------------------

def _json_type(schema) -> str:
    kind = schema.get("type", "string") if isinstance(schema, dict) else "string"
    if isinstance(kind, list):  # ["integer", "null"]: the first real type
        kind = next((t for t in kind if t != "null"), "string")
    return kind if isinstance(kind, str) else "string"


def parse_tools(raw) -> dict[str, Tool]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise RequestError("tools must be a list of {\"type\": \"function\", \"function\": {...}}", "tools")
    tools: dict[str, Tool] = {}
    for i, t in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise RequestError(f"{where} must be {{\"type\": \"function\", \"function\": {{...}}}}", where)
        fn = t["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RequestError(f"{where}.function.name must be 1-64 letters, digits, _ or -, got {name!r}",
                               f"{where}.function.name")
        if name in tools:
            raise RequestError(f"{where}: two tools are called {name!r}", f"{where}.function.name")
        params = fn.get("parameters") or {}
        props = params.get("properties") or {} if isinstance(params, dict) else None
        if not isinstance(props, dict):
            raise RequestError(f"{where}.function.parameters must be a JSON schema of an object",
                               f"{where}.function.parameters")
        required = params.get("required") or []
        if not isinstance(required, list) or any(r not in props for r in required):
            raise RequestError(f"{where}.function.parameters.required must list names from its properties",
                               f"{where}.function.parameters")
        args = tuple(ArgSpec(str(a), a in required, str((s or {}).get("description", "")) if isinstance(s, dict)
                             else "") for a, s in props.items())
        description = fn.get("description") or ""
        tools[name] = Tool(ToolSpec(name, str(description), args), {str(a): _json_type(s) for a, s in props.items()})
    return tools


def describe_tools(tools: dict[str, Tool]) -> str:
    """Plain-text lines for the tools the model has not been trained on ('' when it knows them all)."""
    new = [t for t in tools.values() if not t.known]
    if not new:
        return ""
    head = "You can also call these tools:" if len(new) < len(tools) else "You can call these tools:"
    lines = [head]
    for t in new:
        args = ", ".join(a.name + ("" if a.required else "?") for a in t.spec.args)
        line = f"- {t.spec.name}({args})" + (f": {t.spec.description}" if t.spec.description else "")
        details = [f"{a.name}: {a.description}" for a in t.spec.args if a.description]
        lines.append(line + (" (" + "; ".join(details) + ")" if details else ""))
    return "\n".join(lines)


# --- messages -> our conversation -----------------------------------------------------------------

def to_conversation(messages, preamble: str = "") -> list[dict]:
    """OpenAI messages as DESIGN.md conversation JSON (parts as template objects). `preamble` (tools) is put,
    after the system text, at the head of the first user turn."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", "messages")
    conversation: list[dict] = []
    system: list[str] = []
    turn: list | None = None  # the open assistant turn's parts
    calls: list[list] = []  # [id, call, result or None] of the last assistant message, in the order it made them

    def answer_calls(where: str) -> None:
        """Each call, then its result: what the model would have written and been given, one call at a time."""
        unanswered = [repr(cid) for cid, _, result in calls if result is None]
        if unanswered:
            raise RequestError(f"{where}: the tool calls {', '.join(unanswered)} of the assistant message before "
                               "it have no tool message answering them", "messages")
        for _, call, result in calls:
            turn.extend([call, result])
        calls.clear()

    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with a role", where)
        role = m.get("role")
        if role != "tool":
            answer_calls(where)
        if role in ("system", "developer"):
            system.append(_text(m.get("content"), where))
        elif role == "user":
            turn = None
            conversation.append({"role": "user", "content": _text(m.get("content"), where)})
        elif role == "assistant":
            if turn is None:
                turn = []
                conversation.append({"role": "assistant", "content": turn})
            text = _text(m.get("content"), where)
            if text:
                turn.append(TextPart(text))
            raw = m.get("tool_calls") or []
            if not isinstance(raw, list):
                raise RequestError(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
            for k, c in enumerate(raw):
                cw = f"{where}.tool_calls[{k}]"
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    raise RequestError(f"{cw} must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", "
                                       "\"arguments\"}}}}", cw)
                args = flatten_arguments(fn.get("arguments"), cw)
                calls.append([str(c.get("id", "")), ToolCallPart(fn["name"], args), None])
        elif role == "tool":
            open_calls = [c for c in calls if c[2] is None]
            if not open_calls:
                raise RequestError(f"{where}: a tool message must answer a tool call of the assistant message "
                                   "before it", where)
            cid = str(m.get("tool_call_id", ""))
            match = next((c for c in open_calls if c[0] == cid), open_calls[0])
            match[2] = ToolResultPart(True, _text(m.get("content"), where))
        else:
            raise RequestError(f"{where}.role must be system, developer, user, assistant or tool, not {role!r}",
                               f"{where}.role")
    answer_calls(f"messages[{len(messages)}]")
    head = "\n\n".join(t for t in ["\n\n".join(s for s in system if s), preamble] if t)
    if head:
        first = next((m for m in conversation if m["role"] == "user"), None)
        if first is None or conversation[0] is not first:
            conversation.insert(0, {"role": "user", "content": head})
        else:
            first["content"] = head + ("\n\n" + first["content"] if first["content"] else "")
    if not conversation:
        raise RequestError("messages hold no user or assistant message", "messages")
    return conversation


# --- the whole request ----------------------------------------------------------------------------

def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > MAX_STOP:
        raise RequestError(f"stop must be a string or a list of at most {MAX_STOP} strings", "stop")
    return tuple(s for s in stops if s)


def _tool_choice(choice, tools: dict[str, Tool]) -> tuple[dict[str, Tool], str | None]:
    """(the tools the model may call, the call forced on it: None, '' for any tool, or a name)."""
    if choice is None or choice == "auto":
        return tools, None
    if choice == "none":
        return {}, None
    if choice == "required":
        if not tools:
            raise RequestError("tool_choice 'required' needs tools", "tool_choice")
        return tools, ""
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise RequestError("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", "
                           "\"function\": {\"name\": ...}}", "tool_choice")
    if name not in tools:
        raise RequestError(f"tool_choice names {name!r}, which is not in tools", "tool_choice")
    return {name: tools[name]}, name


def parse_request(body, tok: Tokenizer, context_len: int) -> ChatRequest:
    """A /v1/chat/completions body as prompt ids and sampling settings."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if body.get("n", 1) != 1:
        raise RequestError("n must be 1: this server writes one choice per request", "n")
    if body.get("logprobs"):
        raise RequestError("logprobs are not supported by this server", "logprobs")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = _number({param: max_tokens}, param, 1, 2**31, integer=True)
    temperature = _number(body, "temperature", 0, 2, DEFAULT_TEMPERATURE)
    top_p = _number(body, "top_p", 0, 1, 1.0)
    if top_p == 0:
        temperature = 0.0  # the smallest nucleus is the most likely token: greedy
    top_k = _number(body, "top_k", 0, 2**31, None, integer=True) or None  # not OpenAI's, but vLLM's and llama.cpp's
    seed = _number(body, "seed", -2**63, 2**63, None, integer=True)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))

    declared = parse_tools(body.get("tools"))
    tools, forced_name = _tool_choice(body.get("tool_choice"), declared)
    conversation = to_conversation(body.get("messages"), describe_tools(tools))
    prompt = render_prompt(conversation, tok)
    forced: list[int] = []
    if forced_name is not None:  # the prompt opens the call itself, so the model has to write one
        forced = [tok.special("tool_call_start")] + (tok.encode(forced_name) if forced_name else [])
    if len(prompt) + len(forced) >= context_len - 1:
        raise RequestError(f"the prompt is {len(prompt) + len(forced)} tokens, but this model's context is "
                           f"{context_len} tokens, with room needed for the reply; send fewer or shorter "
                           "messages", "messages", "context_length_exceeded")
    return ChatRequest(prompt + forced, max_tokens, temperature, top_p if top_p < 1 else None,
                       min(top_k, tok.vocab_size) if top_k else None, seed, _stop(body.get("stop")), stream,
                       include_usage, tools, forced)
