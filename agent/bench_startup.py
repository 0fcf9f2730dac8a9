"""`nanocode bench chat`: how long until `nanocode chat` can draw, until its model is ready, and from Enter
to the first streamed text. Each repeat runs in a fresh process (start-up is what is measured), so the
numbers include Python, JAX and the persistent compilation cache exactly as a user meets them."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

# One child process per repeat: it prints one JSON line of timings (seconds since it started).
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from agent.setup import prepare
setup = prepare(model=Path(sys.argv[1]) if sys.argv[1] else None, cwd=Path(sys.argv[2]), save_session=False)
t_prepare = time.perf_counter()
import agent.app  # noqa: F401  (what the Textual app needs before it can draw)
t_ui = time.perf_counter()
agent = setup.load()
t_load = time.perf_counter()
agent.warm_up()
t_ready = time.perf_counter()
first = None
start = time.perf_counter()
for event in agent.run_turn(sys.argv[3], lambda call: ("reject", "")):
    if event.type == "text" and first is None:
        first = time.perf_counter() - start
    if event.type in ("tool_call", "turn_end"):
        break
print(json.dumps({"prepare": t_prepare - t0, "ui": t_ui - t0, "loaded": t_load - t0, "ready": t_ready - t0,
                  "first_text": first}))
"""

COLUMNS = (("ui", "UI can draw"), ("loaded", "model loaded"), ("ready", "model compiled (ready)"),
           ("first_text", "Enter -> first text"))


def run(model: str | None, cwd: Path, prompt: str, repeats: int) -> list[dict]:
    rows = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _CHILD, model or "", str(cwd), prompt],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"the start-up probe failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def report(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"nanocode chat start-up ({len(rows)} fresh processes; seconds)")
    table.add_column("phase")
    table.add_column("median", justify="right")
    table.add_column("min", justify="right")
    table.add_column("max", justify="right")
    for key, label in COLUMNS:
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            table.add_row(label, f"{statistics.median(vals):.2f}", f"{min(vals):.2f}", f"{max(vals):.2f}")
    Console().print(table)
