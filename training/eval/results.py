"""Where eval results live and how they are shown.

Every `nanocode eval X --model DIR` writes `DIR/eval/X.json`; `nanocode report` reads them back. Each eval
module has a `summary_table(result) -> Table`, so the terminal (rich) and the report (Markdown, HTML) show
the very same numbers from the one JSON.
"""
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


def fmt(value, digits: int = 3) -> str:
    """Numbers for tables: floats rounded (large ones in scientific notation), None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3e}" if abs(value) >= 1e6 else f"{value:.{digits}f}"
    return str(value)


def eval_dir(model_dir: str | Path) -> Path:
    return Path(model_dir) / "eval"


def write_result(model_dir: str | Path, name: str, result: dict) -> Path:
    """Writes DIR/eval/<name>.json atomically (temp file + rename), stamped with when and where it ran."""
    out = eval_dir(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"eval": name, "model": str(Path(model_dir).resolve()),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), **result}
    path = out / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_results(model_dir: str | Path) -> dict[str, dict]:
    """eval name -> its JSON, for every DIR/eval/*.json that parses (a broken file is reported, not fatal)."""
    results = {}
    d = eval_dir(model_dir)
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            results[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            results[path.stem] = {"eval": path.stem, "error": f"could not read {path}: {e}"}
    return results


def print_table(table: Table, console=None) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    t = RichTable(title=table.title)
    for i, c in enumerate(table.columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for row in table.rows:
        t.add_row(*row)
    (console or Console()).print(t)
