"""`nanocode run -p PROMPT`: one request, no questions asked.

Prints the final answer (or, with --json, every event as one JSON object per line). Nobody is there to
answer a permission question, so a call that is not pre-approved by --allow/--yes is rejected, the model
is told why, and the rejection is reported on stderr.

Exit status: 0 when the turn ended normally, 1 when it ended early (step limit, repeated failure, context,
reply too long, error), 130 when interrupted with Ctrl+C.
"""
import json
import sys
import threading
from typing import TextIO

from agent.events import Error, Permission, ToolCall, TurnEnd, to_json
from agent.loop import Agent, threaded
from tools import sandbox as tools_sandbox

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def needs_approval_note(name: str) -> str:
    return (f"{name} needs the user's approval, and this non-interactive run allows no {name} calls "
            f"(the user can pass --allow {name} or --yes)")


def run_headless(agent: Agent, prompt: str, *, json_lines: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if agent.memory is not None:  # on stderr: stdout stays the answer (or the event lines)
        print(f"nanocode: {agent.memory.notice()}", file=err)
    permissions = agent.permissions
    if permissions.preapproved("Bash") and permissions.bash_unconfined:  # said once: Bash would run unasked
        print(f"nanocode: {tools_sandbox.status(permissions.sandbox)}", file=err)
    unapproved: dict[int, str] = {}  # call id -> tool name, for the calls ask() turned down

    def ask(call: ToolCall):
        unapproved[call.call_id] = call.name
        return "reject", needs_approval_note(call.name)

    cancel = threading.Event()
    end = TurnEnd("error")
    for event in threaded(agent, prompt, ask, cancel):
        if json_lines:
            out.write(json.dumps(to_json(event), ensure_ascii=False) + "\n")
            out.flush()
        if isinstance(event, Permission) and event.decision == "reject" and event.call_id in unapproved:
            name = unapproved[event.call_id]
            print(f"nanocode: rejected the {name} call (it needs approval); pass --allow {name} or --yes to "
                  "let it run", file=err)
        elif isinstance(event, Error) and not json_lines:
            print(f"nanocode: {event.message}", file=err)
        elif isinstance(event, TurnEnd):
            end = event
    if not json_lines and end.text:
        out.write(end.text + "\n")
        out.flush()
    if end.reason == "done":
        return EXIT_OK
    if end.reason != "error" and not json_lines:
        print(f"nanocode: the turn ended early ({end.reason})", file=err)
    return EXIT_INTERRUPTED if end.reason == "interrupted" else EXIT_FAILED
