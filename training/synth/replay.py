"""A synthetic task's scripted teacher, replayed through the real agent loop (agent/loop.py) in a fresh copy
of its workspace, and scored by the task's own checker: what tests/test_synth_families.py asserts is 100%
for every family, and what tells a checker and its teacher apart from a harness bug.

    replay(task, seed, tok) -> Replay(outcome, teacher, agent_messages)

The token source replays the teacher's own prose and calls (one generation per call, then the answer);
the loop runs the tools for real, so its results must equal the teacher's (`same_results`). A call the
teacher's user declined is declined again through the permission callback, with the same note.
"""
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nanocode.tokenizer import Tokenizer


@dataclass
class Replay:
    outcome: object                 # training.eval.agent_tasks.Outcome
    teacher: list[dict]             # the conversation the teacher wrote (driver.play)
    agent_messages: list[dict]      # what the agent loop recorded
    answer: str
    calls: list[tuple[str, dict, bool]]


def replies(message: dict, tok: Tokenizer) -> list[list[int]]:
    """The generations of one assistant message: prose + a call, ..., then the final prose + <|assistant_end|>."""
    out, ids = [], []
    for p in message["content"]:
        if p["type"] == "text":
            ids += tok.encode(p["text"])
        elif p["type"] == "tool_call":
            ids += [tok.special("tool_call_start")] + tok.encode(p["name"])
            for k, v in p["args"].items():
                ids += [tok.special("tool_arg"), *tok.encode(k), tok.special("tool_val"), *tok.encode(v)]
            out.append(ids + [tok.special("tool_call_end")])
            ids = []
    return out + [ids + [tok.special("assistant_end")]]


def decisions(message: dict) -> list[tuple[str, str]]:
    """(answer, note) for each call of a message, in order: what the teacher's user said to it."""
    parts = message["content"]
    out = []
    for call, result in zip(parts, parts[1:]):
        if call["type"] != "tool_call":
            continue
        text = result["output"]
        if not result["ok"] and text.startswith("the user declined this call"):  # template.declined_message
            out.append(("reject", text.removeprefix("the user declined this call").removeprefix(" and said: ")))
        else:
            out.append(("allow", ""))
    return out


def replay(task, seed: int, tok: Tokenizer, teacher: list[dict] | None = None) -> Replay:
    from agent.events import ToolCall, ToolResult, TurnEnd  # lazy: training imports agent's loop, never its UI
    from agent.loop import Agent
    from agent.permissions import Permissions
    from agent.source import ScriptedSource
    from training.synth.driver import play

    teacher = teacher if teacher is not None else play(task, seed)
    gens, asks = [], []
    for m in teacher:
        if m["role"] == "assistant":
            gens += replies(m, tok)
            asks += decisions(m)
    queue = list(asks)

    def ask(call):
        return queue.pop(0) if queue else ("allow", "")

    with tempfile.TemporaryDirectory(prefix="nanocode-replay-") as tmp:
        ws = task.spec.build(Path(tmp))
        # a long context: the loop must see the results whole, as the teacher did (no trimming)
        agent = Agent(ScriptedSource(gens, context_len=1 << 16), tok, ws, Permissions(), max_steps=30,
                      max_reply_tokens=1 << 14, record_preferences=False)
        answer, calls = "", []
        for m in teacher:
            if m["role"] != "user":
                continue
            pending, calls = {}, []
            for event in agent.run_turn(m["content"], ask):
                if isinstance(event, ToolCall):
                    pending[event.call_id] = event
                elif isinstance(event, ToolResult):
                    call = pending.pop(event.call_id)
                    calls.append((call.name, dict(call.args), event.ok))
                elif isinstance(event, TurnEnd):
                    answer = event.text
        outcome = task.check(ws, answer, calls)
        messages = _normalised(agent.messages, str(ws))
    return Replay(outcome, teacher, messages, answer, calls)


WS_PATH = re.compile(r"/tmp/[\w./-]*?nanocode-(synth|replay)-\w+/?")


def _normalised(messages: list[dict], ws: str) -> list[dict]:
    import json
    return json.loads(json.dumps(messages).replace(ws + "/", "WS/").replace(ws, "WS"))


def results(messages: list[dict]) -> list[tuple[bool, str]]:
    """Every tool result of a conversation, with workspace paths and test timings made comparable."""
    out = []
    for m in messages:
        if m["role"] != "assistant":
            continue
        for p in m["content"]:
            if p["type"] == "tool_result":
                text = WS_PATH.sub("WS/", p["output"])
                text = re.sub(r"\b\d+\.\d+s\b", "T s", text)
                out.append((p["ok"], text))
    return out


def same_results(r: Replay) -> bool:
    return results(r.teacher) == results(r.agent_messages)


def sample_tasks(module, files, n: int, seed: int = 0, tries: int = 400):
    """Up to n (task, seed) of a family whose teacher runs (the driver's retry loop, in miniature)."""
    from training.synth.driver import play
    from training.synth.episode import Skip
    out = []
    for i in range(tries):
        if len(out) >= n:
            break
        rng = random.Random(f"{seed}:{module.NAME}:{i}")
        try:
            task = module.make(files, rng)
            if task is None:
                continue
            s = rng.getrandbits(62)
            conv = play(task, s)
        except Skip:
            continue
        out.append((task, s, conv))
    return out
