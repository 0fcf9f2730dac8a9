"""The four tools the model acts through. Imports nothing from the other nanocode packages."""
from tools.spec import SPECS, ArgSpec, ToolSpec
from tools.result import FileChange, ToolResult
from tools.registry import execute, undo

__all__ = ["SPECS", "ArgSpec", "ToolSpec", "FileChange", "ToolResult", "execute", "undo"]
