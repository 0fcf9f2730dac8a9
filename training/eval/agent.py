"""`nanocode eval agent`: the agentic tasks of training/eval/agent_tasks.py, each in its own temporary workspace,
run through the real agent loop (agent/loop.py) with every call approved automatically, and scored by the
workspace and the answer they leave. Every task is asked twice, with a phrasing pattern the synth data
trains on and with one it never sees (training/eval/phrasing_split.py); with --corpus or --src, tasks on
real files no training conversation was made from are added.

Reported, overall and per split: task success (overall and per kind), the share of tool calls that were
well formed, tool calls per task, calls repeated identically after they failed, how turns ended, and a
few transcripts (conversation JSON, DESIGN.md) to read.

The agent loop lives in `agent/`, which training code must not import at module import time (DESIGN.md:
training depends on nanocode and tools only, and must run where the UI libraries are absent). So every
function here that needs it imports `agent.*` inside its body; agent.loop itself imports no UI library.
"""
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nanocode.tokenizer import Tokenizer
from training.eval.agent_tasks import AgentTask, Step
from training import common
from training.eval import results
from training.eval.results import Table, fmt


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode eval agent", description="Agentic tasks in temporary workspaces "
                                "through the real agent loop, every call approved.")
    results.model_flags(p)
    p.add_argument("--per-kind", type=int, default=2, help="Tasks of each kind (each asked in both splits).")
    p.add_argument("--kinds", help="Comma-separated subset of the task kinds (default: all of them).")
    p.add_argument("--corpus", type=Path, help="Also tasks on the real files of this corpus's validation split "
                   "(a `nanocode data corpus` output).")
    p.add_argument("--src", type=Path, help="Also tasks on real files of this directory of Python files.")
    p.add_argument("--per-family", type=int, default=1, help="Real-file tasks of each synth family (with "
                   "--corpus or --src).")
    p.add_argument("--max-steps", type=int, default=12, help="Most tool calls per task.")
    p.add_argument("--max-reply-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0)
    return p

# Error kinds the loop reports about the turn rather than about one call; any other Error kind is a
# malformed tool call (the ToolCallError kinds of nanocode/template.py).
TURN_ERRORS = frozenset({"context", "context_trimmed", "length", "max_steps", "repeated_failure", "internal",
                         "error"})


@dataclass
class Episode:
    messages: list[dict]                     # the conversation, as the session would store it
    answer: str                              # the turn's final prose
    end: str                                 # how the turn ended (TurnEnd.reason)
    calls: list[tuple[str, dict, bool]]      # (tool, args, ok) of every call that ran
    malformed: int                           # calls the loop could not parse
    errors: list[str]                        # every Error event, "kind: message"


def refuse_to_ask(call):
    raise RuntimeError(f"the eval approves every call automatically; nothing should ask about {call.name}")


def run_episode(workspace: Path, prompt: str, source, tok: Tokenizer, *, max_steps: int = 12,
                max_reply_tokens: int = 512, ask=None, temperature: float = 0.0) -> Episode:
    """One user request through the real agent loop in `workspace`. With ask=None every call is approved
    (Permissions(yes=True)); otherwise `ask(ToolCall) -> (answer, note)` decides each call."""
    from agent.events import Error, ToolCall, ToolResult, TurnEnd  # lazy: see the module docstring
    from agent.loop import Agent
    from agent.permissions import Permissions

    agent = Agent(source, tok, workspace, Permissions(yes=ask is None), max_steps=max_steps,
                  max_reply_tokens=max_reply_tokens, temperature=temperature, record_preferences=False)
    pending: dict[int, ToolCall] = {}
    calls, errors, malformed = [], [], 0
    answer, end = "", "none"
    for event in agent.run_turn(prompt, ask or refuse_to_ask):
        if isinstance(event, ToolCall):
            pending[event.call_id] = event
        elif isinstance(event, ToolResult):
            call = pending.pop(event.call_id)
            calls.append((call.name, dict(call.args), event.ok))
        elif isinstance(event, Error):
            errors.append(f"{event.kind}: {event.message}")
            malformed += event.kind not in TURN_ERRORS
        elif isinstance(event, TurnEnd):
            answer, end = event.text, event.reason
    return Episode(agent.messages, answer, end, calls, malformed, errors)


# --- scripted policies (for tests, and to check the suite's ceiling on a new machine) ---------------

def step_ids(step: Step, tok: Tokenizer) -> list[int]:
    """One generation of the scripted perfect policy: a short note and a tool call, or the final answer."""
    if step.tool is None:
        return tok.encode(step.text) + [tok.special("assistant_end")]
    ids = tok.encode(f"let me use {step.tool}.\n") + [tok.special("tool_call_start")] + tok.encode(step.tool)
    for name, value in step.args.items():
        ids += [tok.special("tool_arg"), *tok.encode(name), tok.special("tool_val"), *tok.encode(value)]
    return ids + [tok.special("tool_call_end")]


def oracle_source(task: AgentTask, tok: Tokenizer, context_len: int = 4096):
    """A token source that replays the task's scripted solution: it scores 100% when harness and tools work."""
    from agent.source import ScriptedSource
    return ScriptedSource([step_ids(s, tok) for s in task.solution], context_len=context_len)


def idle_source(task: AgentTask, tok: Tokenizer, context_len: int = 4096):
    """A token source that does nothing and says so: it scores 0%."""
    from agent.source import ScriptedSource
    return ScriptedSource([tok.encode("i'd rather not touch anything.") + [tok.special("assistant_end")]],
                          context_len=context_len)


# --- the suite -------------------------------------------------------------------------------------

def evaluate(tasks: list[AgentTask], source_for, tok: Tokenizer, *, max_steps: int = 12,
             max_reply_tokens: int = 512, temperature: float = 0.0, keep_transcripts: int = 6,
             progress=None) -> dict:
    """Runs every task; `source_for(task)` gives the token source (one model for all, or a script per task).
    Returns the dict `nanocode eval agent` writes."""
    rows = []
    transcripts = []
    kept_kinds: set[str] = set()
    for task in tasks:
        # ignore_cleanup_errors: the model's Bash calls may have removed or locked files in the workspace
        with tempfile.TemporaryDirectory(prefix="nanocode-agent-eval-", ignore_cleanup_errors=True) as tmp:
            ws = Path(tmp)
            task.materialise(ws)
            ep = run_episode(ws, task.prompt, source_for(task), tok, max_steps=max_steps,
                             max_reply_tokens=max_reply_tokens, temperature=temperature)
            outcome = task.check(ws, ep.answer, ep.calls)
        rows.append({"id": task.id, "kind": task.kind, "pattern": task.pattern, "prompt": task.prompt,
                     "success": outcome.success, "detail": outcome.detail, "tool_calls": len(ep.calls),
                     "malformed_calls": ep.malformed, "repeats": repeated_failures(ep.calls), "end": ep.end})
        # One transcript per kind (the first task of each), then failures, up to keep_transcripts.
        if len(transcripts) < keep_transcripts and (task.kind not in kept_kinds or not outcome.success):
            kept_kinds.add(task.kind)
            transcripts.append({"id": task.id, "success": outcome.success, "detail": outcome.detail,
                                "errors": ep.errors, "messages": ep.messages})
        if progress is not None:
            progress(task, outcome)
    return summarise(rows) | {"tasks": rows, "transcripts": transcripts,
                              "settings": {"max_steps": max_steps, "max_reply_tokens": max_reply_tokens,
                                           "temperature": temperature}}


def repeated_failures(calls: list[tuple[str, dict, bool]]) -> int:
    """Calls made again, name and arguments identical, after that call had failed and with no successful
    Edit in between (rerunning the failing tests after a fix is the right thing to do): the shipped model's
    habit that issue 15 measures."""
    failed, repeats = set(), 0
    for name, args, ok in calls:
        key = (name, tuple(sorted(args.items())))
        repeats += key in failed
        if not ok:
            failed.add(key)
        elif name == "Edit":
            failed.clear()
    return repeats


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    calls = sum(r["tool_calls"] for r in rows)
    malformed = sum(r["malformed_calls"] for r in rows)
    repeats = sum(r.get("repeats", 0) for r in rows)
    kinds = list(dict.fromkeys(r["kind"] for r in rows))  # in order of first appearance
    return {
        "n_tasks": n,
        "success_rate": sum(r["success"] for r in rows) / n if n else None,
        "success_by_kind": {k: sum(r["success"] for r in rows if r["kind"] == k) /
                            sum(r["kind"] == k for r in rows) for k in kinds},
        "well_formed_call_rate": calls / (calls + malformed) if calls + malformed else None,
        # A step is a tool call, well formed or not: what the loop's max_steps counts.
        "steps_per_task": (calls + malformed) / n if n else None,
        "repeated_failed_calls": repeats,
        # the measure: the share of turns (one task is one turn) with a call repeated after it failed
        "repeated_failed_call_turns": sum(r.get("repeats", 0) > 0 for r in rows) / n if n else None,
        "turn_ends": dict(Counter(r["end"] for r in rows)),
    }


def summary_table(result: dict) -> Table:
    """One column per split when the result has them (evaluate_split), else one value column."""
    splits = [s for s in ("seen", "unseen") if s in result]
    cols = [result[s] for s in splits] or [result]
    row = lambda name, key, digits=3: [name, *(fmt(c.get(key), digits) for c in cols)]  # noqa: E731
    rows = [row("task success", "success_rate")]
    kinds = list(dict.fromkeys(k for c in cols for k in c["success_by_kind"]))
    rows += [[f"success: {k}", *(fmt(c["success_by_kind"].get(k)) for c in cols)] for k in kinds]
    rows += [row("well-formed tool calls", "well_formed_call_rate"),
             row("turns with a repeated failed call", "repeated_failed_call_turns"),
             row("steps (tool calls) per task", "steps_per_task", 2), row("tasks", "n_tasks")]
    ends = sorted({e for c in cols for e in c["turn_ends"]})
    rows += [[f"turns ended: {e}", *(fmt(c["turn_ends"].get(e, 0)) for c in cols)] for e in ends]
    if splits:
        rows.append(["seen - unseen success", fmt(result.get("gap")), *[""] * (len(cols) - 1)])
    return Table("Agent tasks", ["metric", *(f"{s} phrasings" for s in splits)] or ["metric", "value"], rows)


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    from training.eval import agent_tasks, phrasing_split
    from training.synth.sources import SourceError
    if a.max_steps < 1 or a.max_reply_tokens < 1 or a.temperature < 0 or a.per_kind < 1 or a.per_family < 0:
        return common.fail("--max-steps, --max-reply-tokens and --per-kind must be >= 1, --per-family >= 0 and "
                           "--temperature >= 0")
    if a.corpus is not None and a.src is not None:
        return common.fail("give --corpus or --src, not both")
    try:
        chosen = tuple(x.strip() for x in a.kinds.split(",") if x.strip()) if a.kinds else agent_tasks.ALL_KINDS
        suites = phrasing_split.split_suites(a.per_kind, a.seed, chosen, src=a.src, corpus=a.corpus,
                                             per_family=a.per_family)
        model_dir = results.model_dir(a.model)
        net, tok, _ = results.load(model_dir)
    except (ValueError, SourceError, common.StageError) as e:
        return common.fail(e)
    from agent.source import SamplerSource  # the agent loop imports no UI library (DESIGN.md)
    from nanocode.sampler import Sampler
    source = SamplerSource(Sampler(net), context_len=net.config.seq_len, seed=a.seed)
    n = sum(map(len, suites.values()))
    print(f"{n} tasks ({', '.join(f'{len(v)} {k}' for k, v in suites.items())} phrasings); tool calls run in "
          "temporary workspaces WITHOUT asking", file=sys.stderr)
    bar, advance = results.progress(n, "agent tasks")
    with bar:
        result = phrasing_split.evaluate_split(suites, lambda task: source, tok, max_steps=a.max_steps,
                                               max_reply_tokens=a.max_reply_tokens, temperature=a.temperature,
                                               progress=advance)
    results.finish(model_dir, "agent", result, summary_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
