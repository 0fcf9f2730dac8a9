"""Keeping a conversation inside a small model's context, without ever crashing on it.

Two mechanisms:
- `trim_result`: each tool result is cut to a token budget before the model sees it (head and tail kept,
  a note in the middle says what was elided and how to see it). The user still sees the full output.
- `fit_prompt`: when the rendered conversation is longer than the room left for the prompt, elide (in this
  order) old tool outputs, old turns, older tool outputs of the current turn, the middle of an over-long
  user message, and finally the oldest steps of the current turn. Only the prompt is changed: the session
  keeps everything. Project memory (agent/memory.py) is put at the head of the first user turn that is left,
  so no trimming ever drops it.
"""
import re
from dataclasses import dataclass

from nanocode.template import ERROR_PREFIX, notes_ids, render_conversation, render_prompt
from nanocode.tokenizer import Tokenizer

ELIDED_OUTPUT = "[output elided to fit the context; call the tool again if you need it]"


class ContextFull(RuntimeError):
    """Even the current step alone does not fit the model's context."""


# --- trimming one tool result ---------------------------------------------------------------------

def _hint(name: str, args: dict[str, str], first: str, last: str) -> str:
    """How the model can see the elided part, per tool. first/last are the first and last elided lines."""
    if name == "Read":
        a, b = re.match(r"\s*(\d+)", first), re.match(r"\s*(\d+)", last)
        path = args.get("path", "the file")
        if a and b:
            start, end = int(a.group(1)), int(b.group(1))
            return f"to see them, Read {path} with offset={start} limit={end - start + 1}"
        return f"to see them, Read {path} with offset and limit"
    if name == "Grep":
        return "to see them, narrow the search with path, glob or a more specific pattern"
    if name == "Bash":
        return "to see them, run the command again piped through head, tail, grep or sed -n 'A,Bp'"
    return "ask for less output to see them"


def _cut_prefix(b: bytes) -> bytes:
    """A prefix that ends on a line break when that keeps at least half of it, else on a UTF-8 boundary."""
    nl = b.rfind(b"\n")
    if nl >= len(b) // 2:
        return b[:nl + 1]
    return b.decode("utf-8", "ignore").encode("utf-8")


def _cut_suffix(b: bytes) -> bytes:
    nl = b.find(b"\n")
    if 0 <= nl < len(b) // 2:
        return b[nl + 1:]
    # drop continuation bytes of a character whose start was cut off
    i = 0
    while i < len(b) and (b[i] & 0xC0) == 0x80:
        i += 1
    return b[i:]


def trim_text(text: str, tok: Tokenizer, budget: int, hint=lambda first, last: "") -> str:
    """`text` if it fits in `budget` tokens, else its head (2/3) and tail (1/3) around a note."""
    ids = tok.encode(text)
    if len(ids) <= budget:
        return text
    data = tok.decode_bytes(ids)
    for with_hint in (True, False):  # a budget too small for the hint still gets the short note
        keep = max(budget - 64, budget // 2)  # room for the note
        while keep > 8:
            head_n = keep * 2 // 3
            head = _cut_prefix(tok.decode_bytes(ids[:head_n]))
            tail = _cut_suffix(tok.decode_bytes(ids[len(ids) - (keep - head_n):]))
            middle = data[len(head):len(data) - len(tail)]
            lines = middle.decode("utf-8", "replace").splitlines() or [""]
            how = hint(lines[0], lines[-1]) if with_hint else ""
            note = (f"[... {len(lines)} line{'s' * (len(lines) != 1)} elided to fit the model's context"
                    f"{'; ' + how if how else ''} ...]\n")
            if head and not head.endswith(b"\n"):
                note = "\n" + note
            out = head.decode("utf-8") + note + tail.decode("utf-8")
            if len(tok.encode(out)) <= budget:
                return out
            keep = keep * 3 // 4
    return tok.decode_bytes(ids[:budget]).decode("utf-8", "ignore")  # no room even for a note


def trim_result(output: str, name: str, args: dict[str, str], tok: Tokenizer, budget: int) -> str:
    return trim_text(output, tok, budget, lambda first, last: _hint(name, args, first, last))


# --- fitting the whole prompt ---------------------------------------------------------------------

@dataclass
class Fitted:
    ids: list[int]
    elided_outputs: int = 0   # tool outputs replaced by ELIDED_OUTPUT
    dropped_messages: int = 0  # whole old messages left out
    trimmed_user: bool = False  # the current user message was cut in the middle
    dropped_steps: int = 0    # oldest parts of the current assistant turn left out

    @property
    def changed(self) -> bool:
        return bool(self.elided_outputs or self.dropped_messages or self.trimmed_user or self.dropped_steps)

    def describe(self) -> str:
        what = []
        if self.elided_outputs:
            what.append(f"{self.elided_outputs} old tool output{'s' * (self.elided_outputs != 1)}")
        if self.dropped_messages:
            what.append(f"{self.dropped_messages} old message{'s' * (self.dropped_messages != 1)}")
        if self.trimmed_user:
            what.append("the middle of your message")
        if self.dropped_steps:
            what.append(f"the first {self.dropped_steps} parts of this turn")
        return "elided " + ", ".join(what) + " from what the model sees (the session keeps everything)"


def _copy(messages: list[dict]) -> list[dict]:
    return [dict(m, content=list(m["content"])) if isinstance(m["content"], list) else dict(m) for m in messages]


def _result_len(tok: Tokenizer, part: dict) -> int:
    return len(tok.encode(part["output"] if part["ok"] else ERROR_PREFIX + part["output"]))


def fit_prompt(messages: list[dict], tok: Tokenizer, limit: int, memory: str = "") -> Fitted:
    """Prompt ids for `messages` (see template.render_prompt) of at most `limit` tokens, with `memory` at the
    head of the first user turn. Lengths are tracked incrementally (each piece is encoded on its own, so
    lengths add up exactly) to stay linear."""
    if not memory:
        return _fit(messages, tok, limit)
    # The memory's ids spliced in after the first <|user_start|> (ids[1]: a prompt always starts
    # <|bos|><|user_start|>, see step 2 below), as template.render_conversation trains them.
    memory_ids = notes_ids(memory, tok)
    fit = _fit(messages, tok, limit - len(memory_ids))
    if fit.ids[1:2] == [tok.special("user_start")]:
        fit.ids = fit.ids[:2] + memory_ids + fit.ids[2:]
    return fit


def _fit(messages: list[dict], tok: Tokenizer, limit: int) -> Fitted:
    ids = render_prompt(messages, tok)
    if len(ids) <= limit:
        return Fitted(ids)
    msgs, fit, n = _copy(messages), Fitted([]), len(ids)
    cur = max(i for i, m in enumerate(msgs) if m["role"] == "user")  # the current turn starts here

    def elide_results(lo: int, hi: int, keep_last: bool) -> None:
        nonlocal n
        spots = [(i, j) for i in range(lo, hi) if isinstance(msgs[i]["content"], list)
                 for j, p in enumerate(msgs[i]["content"])
                 if p.get("type") == "tool_result" and p["output"] != ELIDED_OUTPUT]
        if keep_last and spots:
            spots.pop()
        for i, j in spots:
            if n <= limit:
                return
            old = msgs[i]["content"][j]
            new = dict(old, output=ELIDED_OUTPUT)
            n += _result_len(tok, new) - _result_len(tok, old)
            msgs[i]["content"][j] = new
            fit.elided_outputs += 1

    # 1. old tool outputs, oldest first
    elide_results(0, cur, keep_last=False)
    # 2. old turns, oldest first; the prompt then starts with a user message again
    while n > limit and cur > 0:
        n -= len(render_conversation([msgs.pop(0)], tok)[0]) - 1
        cur -= 1
        fit.dropped_messages += 1
    while cur > 0 and msgs[0]["role"] != "user":
        n -= len(render_conversation([msgs.pop(0)], tok)[0]) - 1
        cur -= 1
        fit.dropped_messages += 1
    # 3. this turn's earlier tool outputs (the latest one is what the model is answering)
    elide_results(cur, len(msgs), keep_last=True)
    # 4. the middle of a user message too long for the context
    if n > limit:
        user = msgs[cur]
        old_len = len(tok.encode(user["content"]))
        budget = max(old_len - (n - limit), 16)
        user["content"] = trim_text(user["content"], tok, budget)
        n += len(tok.encode(user["content"])) - old_len
        fit.trimmed_user = True
    # 5. the oldest parts of this turn, keeping the latest call and its result (last resort: recount exactly)
    while n > limit and cur + 1 < len(msgs) and len(msgs[cur + 1]["content"]) > 2:
        msgs[cur + 1]["content"].pop(0)
        fit.dropped_steps += 1
        n = len(render_prompt(msgs, tok))
    fit.ids = render_prompt(msgs, tok)
    if len(fit.ids) > limit:
        raise ContextFull(f"the current request needs {len(fit.ids)} tokens even after eliding old output, "
                          f"but the model's context leaves room for {limit}; start a new conversation "
                          "(/clear) or ask for something smaller")
    return fit
