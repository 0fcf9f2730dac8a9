"""What every eval shares: the model it evaluates (--model), where its result lives and how it is shown.

Every `nanocode eval X --model DIR` writes `DIR/eval/X.json`; `nanocode report` reads them back. Each eval
module has a `summary_table(result) -> Table`, so the terminal (rich) and the report (Markdown, HTML) show
the very same numbers from the one JSON.
"""
import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from training.common import StageError


def model_flags(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    parser.add_argument("--model", type=Path, help="Model directory (default: $NANOCODE_MODEL, then the newest "
                        "model under $NANOCODE_HOME, then the one in checkpoints/).")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="Seed of the sampling and of the generated tasks.")


def model_dir(model: Path | None) -> Path:
    """The model to evaluate: --model, else the one `nanocode chat` would load."""
    from nanocode.lookup import CheckpointError, find_model
    try:
        return find_model(model)
    except CheckpointError as e:
        raise StageError(str(e)) from e


def load(model_dir: Path):
    """(model, tokenizer, info) with the persistent compilation cache on."""
    from nanocode import runtime
    from nanocode.checkpoint import CheckpointError, load_model
    runtime.setup_jax()
    try:
        return load_model(model_dir)
    except CheckpointError as e:
        raise StageError(str(e)) from e


def finish(model_dir: Path, name: str, result: dict, summary_table) -> None:
    """Print the result's table and write it next to the model."""
    print_table(summary_table(result))
    print(f"wrote {write_result(model_dir, name, result)}")


def progress(total: int, what: str):
    """A rich progress bar on stderr and the callback that advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True))
    task = bar.add_task(what, total=total)
    return bar, lambda *_: bar.advance(task)


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
