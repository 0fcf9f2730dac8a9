"""The constitution, SOUL.md, as data: its text (for a larger model's critic prompt) and its rule ids.

SOUL.md lives at the repository root; `training/SOUL.md` is a symlink to it so that it is also package
data (setuptools copies the file the link points to into the wheel) and `importlib.resources` finds it
in an editable install and in a wheel alike.
"""
import re
from functools import cache
from importlib import resources

RULE_HEADING = re.compile(r"^### `([a-z_]+)`\s*$", re.MULTILINE)


@cache
def soul_text() -> str:
    path = resources.files("training") / "SOUL.md"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError("SOUL.md is missing from the training package; reinstall nanocode "
                                "(`pip install -e .`) or restore SOUL.md at the repository root") from None


def soul_rule_ids(text: str | None = None) -> list[str]:
    """The rule ids SOUL.md declares, in order: each is a `### \\`rule_id\\`` heading."""
    return RULE_HEADING.findall(soul_text() if text is None else text)


def soul_rule_texts(text: str | None = None) -> dict[str, str]:
    """rule id -> the paragraph under its heading (what a model critic is shown for that rule)."""
    text = soul_text() if text is None else text
    heads = list(RULE_HEADING.finditer(text))
    out = {}
    for h, nxt in zip(heads, heads[1:] + [None]):
        body = text[h.end():nxt.start() if nxt else len(text)]
        out[h.group(1)] = " ".join(body.split())
    return out
