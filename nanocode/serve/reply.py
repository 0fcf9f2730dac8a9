"""What a request's generated ids become in an OpenAI reply: prose (streamed as soon as it is safe to show),
at most one tool call, and the finish reason.

- Prose is decoded bytewise (a token can end inside a UTF-8 character), and text that could be the start of
  a `stop` string is held back until it is clear that it is not.
- `<|tool_call_start|>` opens a call when the request declared tools (otherwise it ends the reply: a client
  that gave no tools cannot run one). The call is parsed against the request's tools at
  `<|tool_call_end|>` and its string values turned into JSON by the tool's schema types.
- A malformed call (unknown tool, missing argument, stray token) is returned as text, the way vLLM does with
  a call its parser cannot read: the client sees what the model wrote, nothing is lost or invented.
- Any other special token (<|assistant_end|>, or one out of place such as <|user_start|>) ends the reply.
"""
import codecs
import json
import re
from collections.abc import Sequence

from nanocode.serve.protocol import Tool
from nanocode.template import ToolCallError, ToolCallPart, parse_tool_call
from nanocode.tokenizer import Tokenizer


def json_value(text: str, kind: str):
    """Our string value as the JSON type the tool's schema asks for; the string itself when it is not one."""
    t = text.strip()
    if kind == "integer" and re.fullmatch(r"[+-]?\d{1,18}", t):
        return int(t)
    if kind == "number":
        try:
            return int(t) if re.fullmatch(r"[+-]?\d{1,18}", t) else float(t)
        except ValueError:
            return text
    if kind == "boolean" and t.lower() in ("true", "false"):
        return t.lower() == "true"
    if kind in ("object", "array"):
        try:
            value = json.loads(t)
        except json.JSONDecodeError:
            return text
        return value if isinstance(value, dict if kind == "object" else list) else text
    return text


def arguments_json(call: ToolCallPart, tool: Tool) -> str:
    return json.dumps({k: json_value(v, tool.types.get(k, "string")) for k, v in call.args.items()},
                      ensure_ascii=False)


class Reply:
    def __init__(self, tok: Tokenizer, tools: dict[str, Tool], stop: Sequence[str] = (), forced: Sequence[int] = ()):
        """forced: the ids of a call the prompt already opened (tool_choice); they count as written."""
        self.tok, self.tools, self.stops = tok, tools, tuple(stop)
        self.start, self.end = tok.special("tool_call_start"), tok.special("tool_call_end")
        self.inside = {tok.special("tool_arg"), tok.special("tool_val")}
        self.content = ""       # the prose so far, all of it shown (what `feed` returned)
        self.call: ToolCallPart | None = None
        self.finish_reason: str | None = None  # set once the reply is over: stop, tool_calls or length
        self.tokens = 0         # ids generated (usage.completion_tokens)
        self._held = ""         # decoded prose not shown yet: it may begin a stop string
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._call_ids: list[int] | None = None  # ids after <|tool_call_start|> while inside a call
        if forced:
            self._call_ids = list(forced[1:])

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def feed(self, ids: Sequence[int]) -> str:
        """Takes newly generated ids; returns the prose that can be shown now ('' if none)."""
        shown = []
        for i in ids:
            if self.done:
                break
            self.tokens += 1
            if i >= len(self.tok.token_bytes):  # a padded vocabulary's id: no text
                continue
            if self._call_ids is not None:
                shown.append(self._in_call(i))
            elif i == self.start and self.tools:
                shown.append(self._release(self._utf8.decode(b"", final=True), final=True))
                self._call_ids = []
            elif i in self.tok.special_ids:
                shown.append(self._release(self._utf8.decode(b"", final=True), final=True))
                self.finish_reason = "stop"
            else:
                shown.append(self._release(self._utf8.decode(self.tok.token_bytes[i])))
        out = "".join(shown)
        self.content += out
        return out

    def close(self) -> str:
        """Generation ended without a stop (token budget or the end of the context): the last held text."""
        if self.done:
            return ""
        if self._call_ids is not None:  # cut off inside a call: what it wrote is shown as text
            out = self._malformed()
        else:
            out = self._release(self._utf8.decode(b"", final=True), final=True)
        self.content += out
        self.finish_reason = "length"
        return out

    # --- the work -----------------------------------------------------------------------------------

    def _release(self, text: str, final: bool = False) -> str:
        """Adds decoded text; returns the part of the held text that cannot begin a stop string."""
        buf = self._held + text
        for s in self.stops:
            k = buf.find(s)
            if k >= 0:
                self._held, self.finish_reason = "", "stop"
                return buf[:k]
        keep = 0
        if not final:  # the longest tail of buf that is a proper prefix of some stop string
            for s in self.stops:
                for n in range(min(len(s) - 1, len(buf)), keep, -1):
                    if buf.endswith(s[:n]):
                        keep = n
                        break
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def _in_call(self, i: int) -> str:
        """Takes one id inside a call; returns the text to show (only for a malformed call)."""
        if i == self.end:
            try:
                call = parse_tool_call(self._call_ids, self.tok, {n: t.spec for n, t in self.tools.items()})
            except ToolCallError:
                self.finish_reason = "stop"
                return self._malformed(close=True)
            self.call, self.finish_reason = call, "tool_calls"
        elif i in self.tok.special_ids and i not in self.inside:
            self._call_ids.append(i)
            self.finish_reason = "stop"
            return self._malformed()
        else:
            self._call_ids.append(i)
        return ""

    def _malformed(self, close: bool = False) -> str:
        ids = [self.start] + self._call_ids + ([self.end] if close else [])
        self._call_ids = None
        return self.tok.decode(ids)
