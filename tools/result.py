from dataclasses import dataclass


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    output: str
