"""execute(): check a tool call against SPECS, parse its string arguments, run it, and turn every failure into an
ok=False result whose message tells the model how to recover. Nothing here raises to the caller."""
import difflib
import re
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from tools import bash, edit, grep, read
from tools.result import FileChange, ToolError, ToolResult
from tools.spec import SPECS, ToolSpec

_RUNNERS = {"Read": read.run, "Edit": edit.run, "Grep": grep.run, "Bash": bash.run}
_CANCELLABLE = {"Grep", "Bash"}  # the tools that can run long enough for the user to interrupt them
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off", ""}


def _usage(spec: ToolSpec) -> str:
    args = "; ".join(f"{a.name} ({'required' if a.required else 'optional'}): {a.description}" for a in spec.args)
    return f"{spec.name} takes {args}."


def _tool(name: object) -> ToolSpec:
    if isinstance(name, str) and name in SPECS:
        return SPECS[name]
    names = ", ".join(SPECS)
    if not isinstance(name, str) or not name.strip():
        raise ToolError(f"the tool call has no tool name; the tools are {names}")
    close = [n for n in SPECS if n.casefold() == name.strip().casefold()] or difflib.get_close_matches(name, SPECS, 1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ToolError(f"there is no tool named {name[:80]!r}.{hint} The tools are {names} (names are case-sensitive).")


def _text_values(spec: ToolSpec, args: object) -> dict[str, str]:
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ToolError(f"the arguments of {spec.name} must be name/value pairs, not {type(args).__name__}. "
                        f"{_usage(spec)}")
    values = {}
    for key, value in args.items():
        if not isinstance(key, str) or key not in spec.arg_names:
            close = difflib.get_close_matches(key, spec.arg_names, 1) if isinstance(key, str) else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown_key = key[:80] if isinstance(key, str) else key
            raise ToolError(f"{spec.name} has no argument {shown_key!r}{hint}. {_usage(spec)}")
        if isinstance(value, bool):  # values travel as text; accept what a JSON session file may hold
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise ToolError(f"the value of {spec.name}'s argument {key!r} must be text, not {type(value).__name__}")
        values[key] = value
    missing = [a for a in spec.required if a not in values]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ToolError(f"{spec.name} is missing its required argument{plural} {', '.join(map(repr, missing))}. "
                        f"{_usage(spec)}")
    return values


def parse_args(spec: ToolSpec, args: object) -> dict[str, object]:
    """Typed keyword arguments for the tool's run(); an empty optional number means its default."""
    values = _text_values(spec, args)
    parsed: dict[str, object] = {}
    for arg in spec.args:
        raw = values.get(arg.name)
        if raw is None:
            continue
        if arg.kind == "int":
            if not raw.strip():
                continue
            if not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", raw):
                raise ToolError(f"{arg.name} must be a whole number such as 100; got {raw[:40]!r}")
            parsed[arg.name] = int(raw)
        elif arg.kind == "bool":
            flag = raw.strip().lower()
            if flag not in _TRUE | _FALSE:
                raise ToolError(f"{arg.name} must be true or false; got {raw[:40]!r}")
            parsed[arg.name] = flag in _TRUE
        else:
            parsed[arg.name] = raw
    return parsed


def _clean(result: ToolResult) -> ToolResult:
    """Lone surrogates (from undecodable file names) would break the tokenizer and JSON files later: replace them."""
    return replace(result, output=result.output.encode("utf-8", "replace").decode("utf-8"))


def _workspace(workspace: object) -> Path:
    try:
        path = Path(workspace)  # type: ignore[arg-type]
        if path.is_dir():
            return path
    except (TypeError, ValueError, OSError):
        pass
    raise ToolError(f"the workspace {workspace!r} is not an existing directory; the tools cannot run")


def execute(name: str, args: dict[str, str], workspace: Path, *,
            cancel: threading.Event | None = None, sandbox: bool = True) -> ToolResult:
    """Run one tool call. `cancel`, when set by another thread, stops a running Bash or Grep within ~50 ms.
    `sandbox`: Bash runs in the OS sandbox where the machine has one (tools.sandbox.status() says)."""
    try:
        spec = _tool(name)
        kwargs = parse_args(spec, args)
        if spec.name in _CANCELLABLE:
            kwargs["cancel"] = cancel
        if spec.name == "Bash":
            kwargs["sandbox"] = sandbox
        return _clean(_RUNNERS[spec.name](_workspace(workspace), **kwargs))
    except ToolError as e:
        return _clean(ToolResult(False, str(e)))
    except Exception as e:  # a bug in a tool must still reach the model as a result, never crash the agent
        return _clean(ToolResult(False, f"{name} failed with an unexpected error ({type(e).__name__}: {e}). "
                                        "This is a fault in the tool, not in your call; try another way, e.g. Bash."))


def undo(change: FileChange, workspace: Path) -> ToolResult:
    """Revert what one Edit did (see tools.edit.revert); for /undo. Never raises."""
    try:
        return _clean(edit.revert(_workspace(workspace), change))
    except ToolError as e:
        return _clean(ToolResult(False, str(e)))
    except Exception as e:
        return _clean(ToolResult(False, f"undo failed with an unexpected error ({type(e).__name__}: {e})"))
