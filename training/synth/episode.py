"""An episode: a scripted teacher talking to a user in a real workspace through the real tools.

A task family writes the script (`user`, `say`, `call`, `decline`, `end`); every `call` runs the tool
in the workspace, so every result in the conversation is real output, exactly as `tools.execute`
returns it. An episode can be run with one *fault* switched on for one turn (the last by default):
that produces the bad draft a weaker generator would write; the same script without the fault is the
revision. Both are critiqued; the pair becomes DPO data.
"""
import random
import re
from pathlib import Path

from nanocode.template import declined_message
import tools
from tools import grep as grep_tool
from tools.registry import parse_args
from tools.result import ToolError, ToolResult
from tools.spec import SPECS
from training.synth import voice

# Tool results longer than this make the task unusable rather than being cut: the agent trims results
# above its budget (agent/context.py: a quarter of the context, >= 512 tokens at 2048) and training on
# untrimmed long results would teach a format the model never sees. ~1200 chars is ~350 code tokens.
MAX_RESULT_CHARS = 1200


class Skip(Exception):
    """This task cannot be made from this source (a result too long, a tool doing something unexpected)."""


def run_tool(name: str, args: dict[str, str], workspace: Path) -> ToolResult:
    """tools.execute, except that Grep searches in this process: tools/grep.py runs the search in a child
    process (so a user can interrupt it), which costs ~80 ms per call; `grep.search` is the same search
    with the same output, and our patterns are simple."""
    if name != "Grep":
        return tools.execute(name, args, workspace)
    try:
        kwargs = parse_args(SPECS["Grep"], args)
        result = grep_tool.search(Path(workspace), **kwargs)
    except ToolError as e:
        result = ToolResult(False, str(e))
    return ToolResult(result.ok, result.output.encode("utf-8", "replace").decode("utf-8"))


# A broken version of a call, as a small model writes it: (what is wrong, how to break the args/name)
_WRONG_ARG = {"path": "file", "pattern": "regex", "command": "cmd", "old_string": "old", "new_string": "new"}
_WRONG_TOOL = {"Read": "Cat", "Grep": "Search", "Edit": "Write", "Bash": "Shell"}


def broken_call(name: str, args: dict[str, str], rng: random.Random) -> tuple[str, dict[str, str]]:
    ways = ["tool", "arg", "missing"] + (["number"] if "limit" in args or "offset" in args else [])
    way = rng.choice(ways)
    if way == "tool":
        return _WRONG_TOOL[name], dict(args)
    if way == "arg":
        first = SPECS[name].required[0]
        return name, {(_WRONG_ARG.get(k, k + "s") if k == first else k): v for k, v in args.items()}
    if way == "missing":
        first = SPECS[name].required[0]
        return name, {k: v for k, v in args.items() if k != first}
    key = "limit" if "limit" in args else "offset"
    return name, {**args, key: rng.choice(["ten", "all", "20 lines", "first"])}


class Episode:
    def __init__(self, workspace: Path, rng: random.Random, fault: str | None = None, fault_turn: int = 0,
                 fault_rng: random.Random | None = None, allowed_paths: list[str] | None = None):
        self.ws = Path(workspace)
        self.rng = rng                     # prose choices: identical in the draft and the revision
        self.frng = fault_rng or random.Random(0)  # fault choices: separate, so prose choices line up
        self.fault = fault
        self.fault_turn = fault_turn
        self.allowed_paths = allowed_paths
        self.messages: list[dict] = []
        self.parts: list[dict] | None = None
        self.turn = 0                      # index of the assistant turn being written
        self.calls_this_turn = 0

    # -- conversation building --
    def active(self, fault: str) -> bool:
        return self.fault == fault and self.turn == self.fault_turn

    def user(self, text: str) -> None:
        if self.parts is not None:
            raise RuntimeError("end() the assistant turn before the next user message")
        self.messages.append({"role": "user", "content": text})
        self.parts, self.calls_this_turn = [], 0

    def pick(self, bank: list[str], **fields) -> str:
        """A phrasing from `bank`, preferring one not yet said in this conversation (saying the same
        sentence twice reads as rambling, and the critic's `concise` rule says so)."""
        options = [b.format(**fields) for b in bank]
        said = {p["text"].strip() for m in self.messages if m["role"] == "assistant" for p in m["content"]
                if p["type"] == "text"} | {p["text"].strip() for p in self.parts or [] if p["type"] == "text"}
        fresh = [o for o in options if not any(o in s for s in said)]
        return self.rng.choice(fresh or options)

    def say(self, text: str, **alternatives: str) -> None:
        """Prose. `alternatives` maps a fault name to the text a faulty draft says instead."""
        for fault, alt in alternatives.items():
            if self.active(fault):
                text = alt
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] += " " + text
        else:
            self.parts.append({"type": "text", "text": text})

    def _note_newline(self) -> None:
        if self.parts and self.parts[-1]["type"] == "text" and not self.parts[-1]["text"].endswith("\n"):
            self.parts[-1]["text"] += "\n"

    def _record(self, name: str, args: dict[str, str], result: ToolResult) -> None:
        if len(result.output) > MAX_RESULT_CHARS:
            raise Skip(f"{name} result of {len(result.output)} chars")
        self._note_newline()
        self.parts.append({"type": "tool_call", "name": name, "args": dict(args)})
        self.parts.append({"type": "tool_result", "ok": result.ok, "output": result.output})

    def call(self, name: str, expect_ok: bool | None = True, **args: str) -> ToolResult:
        """Run a tool for real and record the call and its result. With expect_ok, a result that did not
        go as the script planned (the file was not there, the command failed) abandons the task."""
        if self.active("malformed") and self.calls_this_turn == 0:
            bad_name, bad_args = broken_call(name, args, self.frng)
            self._record(bad_name, bad_args, run_tool(bad_name, bad_args, self.ws))
            self.say(voice.pick(self.frng, voice.RETRY_NOTES))
        result = run_tool(name, args, self.ws)
        if expect_ok is not None and result.ok != expect_ok:
            raise Skip(f"{name} {args} gave ok={result.ok}: {result.output[:200]}")
        self._record(name, args, result)
        self.calls_this_turn += 1
        return result

    def decline(self, name: str, note: str = "", **args: str) -> None:
        """The user rejects this call (it never runs); the model reads what agent/loop.py would write."""
        self._record(name, args, ToolResult(False, declined_message(note)))
        self.calls_this_turn += 1

    def end(self) -> None:
        if self.active("extra_work"):
            self._extra_work()
        parts = self.parts
        if self.fault in voice.PROSE_FAULTS and self.turn == self.fault_turn:
            parts = voice.apply_prose_fault(self.fault, parts, self.frng)
            if parts is None:
                raise Skip(f"fault {self.fault} does not apply to this turn")
        self.messages.append({"role": "assistant", "content": parts})
        self.parts, self.turn = None, self.turn + 1

    def conversation(self) -> list[dict]:
        if self.parts is not None:
            raise RuntimeError("the last assistant turn was not ended")
        return self.messages

    # -- the extra_work fault: an unrequested tidy-up edit -------------------------------------------
    def _extra_work(self) -> None:
        """Adds a docstring nobody asked for to a function that lacks one (a real Edit in the workspace)."""
        from training.synth.sources import analyze
        files = sorted(p.relative_to(self.ws).as_posix() for p in self.ws.rglob("*.py") if ".pyc" not in p.name)
        self.frng.shuffle(files)
        for rel in files:
            text = (self.ws / rel).read_text(encoding="utf-8")
            info = analyze(text)
            if info is None:
                continue
            for f in info.functions:
                line = info.line(f.lineno)
                if f.doc or f.def_end != f.lineno or text.count(line) != 1 or not line.rstrip().endswith(":"):
                    continue
                indent = re.match(r"\s*", line).group(0) + "    "
                doc = f'{indent}"""{f.name.strip("_").replace("_", " ").capitalize()}."""'
                self.say(self.frng.choice(["also, let me tidy something up", "one more small thing",
                                           "and a quick cleanup while i'm here"]))
                self.call("Edit", path=rel, old_string=line, new_string=line + "\n" + doc)
                self.say(self.frng.choice(["while i was at it, i also added a docstring to `{n}`.",
                                           "i also added a docstring to `{n}` as a bonus.",
                                           "i went ahead and documented `{n}` too."]).format(n=f.name))
                return
        raise Skip("no function to tidy for the extra_work fault")
