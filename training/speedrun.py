"""`nanocode train speedrun`: every stage, from code on disk to a model `nanocode chat` loads, in one command.

    nanocode train speedrun --preset cpu             # this laptop, about half an hour
    nanocode train speedrun --preset gpu --out RUN   # one GPU, about 20 minutes on an H200
    nanocode train speedrun --preset test            # seconds: the test suite's end-to-end run

Stages, each in its own folder of the run directory (RUN, default $NANOCODE_HOME/runs/speedrun-<preset>):
    corpus/     `data corpus`      code already on disk, cleaned, deduplicated, split
    tokenizer/  `train tokenizer`  the byte-level BPE code tokenizer
    tokens/     `data shards`      the corpus as token shards
    synth/      `data synth`       tool-use conversations from real tools on real code, plus DPO pairs
    base/       `train base`       pretraining with fill-in-the-middle (resumable mid-run)
    sft/        `train sft`        supervised fine-tuning on the conversations
    dpo/        `train dpo`        preference optimisation toward SOUL.md
    rl/         `train rl`         reinforcement on verifiable agent tasks with the real tools
    eval/       `eval ...`         bpb, tokenizer, HumanEval, agent tasks, SOUL rules on the final model
    report/     `report`           report.md and report.html
    model       a link to the final model (rl/model, or the last stage that finished and kept its gate)
    logs/       every stage's output, one file per stage
What each preset runs and how a stage counts as done is the recipe in training/pipeline.py. A stage whose
output is complete is skipped, so a rerun after a kill continues with the first incomplete stage, and
pretraining/SFT/DPO/RL resume from their newest checkpoint inside the stage.

The stages run in this process, one after the other: as subprocesses each would pay the JAX start-up again
for no gain the compilation cache does not already give (measured: training/LOG.md). Synth runs before
pretraining (it needs only the corpus): its worker pool forks, and forking a process in which JAX has
started its threads can deadlock (Python warns as much), so it goes before anything imports jax. With the
gpu budget it runs as `nanocode data synth` in a subprocess beside pretraining instead (CPU work beside GPU
work; SFT waits for it): a stage's `beside` in training/pipeline.py.
"""
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training import common, outdir
from training.common import StageError, write_json
from training.pipeline import BUDGETS, PIPELINE, STAGES, Run, link_final_model


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode train speedrun", description="Every stage in one go: corpus, "
                                "tokenizer, shards, base, synth, SFT, DPO, RL, eval, report (each skipped when done).")
    p.add_argument("--preset", default="cpu", help="test (seconds), cpu (this laptop, ~30 min), gpu (one GPU, ~20 "
                   "min on an H200). Default: cpu.")
    p.add_argument("--out", type=Path, help="Run directory (default: $NANOCODE_HOME/runs/speedrun-<preset>); rerun "
                   "the same command on it to continue after a kill.")
    return p


SETTINGS = "speedrun.json"     # the preset and budget a run directory was started with
WRITES = (SETTINGS, *STAGES, "logs", "model", "summary.json", "timings.json")  # into RUN (training/outdir.py)


def default_out(preset: str) -> Path:
    from nanocode.lookup import nanocode_home
    return nanocode_home() / "runs" / f"speedrun-{preset}"


def open_run(out: Path | None, preset: str) -> Run:
    """The run directory, checked against the preset it was started with (a run is one recipe: resuming
    a cpu run with the gpu budget would mix two models' stages)."""
    if preset not in BUDGETS:
        raise StageError(f"unknown preset {preset!r}; choose one of {', '.join(BUDGETS)}")
    out = Path(out or default_out(preset)).expanduser().absolute()
    budget = BUDGETS[preset]
    settings = out / SETTINGS
    saved = json.loads(settings.read_text()) if settings.is_file() else None
    if saved is not None and saved.get("preset") != preset:
        raise StageError(f"{out} holds a speedrun with --preset {saved.get('preset')}; rerun with that preset "
                         f"to continue it, or pass another --out for a --preset {preset} run")
    if saved is None:
        if out.is_dir() and any(p.name in STAGES for p in out.iterdir()):
            raise StageError(f"{out} holds stage folders but no {SETTINGS}: it was not made by the speedrun; "
                             "pass another --out")
    outdir.claim(out, "train speedrun", WRITES)
    if saved is None:
        write_json(settings, {"preset": preset, "budget": asdict(budget)})
    (out / "logs").mkdir(parents=True, exist_ok=True)
    return Run(out, preset, budget)


# --- a stage's output goes to its log; the view shows every stage --------------------------------------------

class _to_log:
    """Sends a stage's output to its log file: sys.stdout/sys.stderr, and also file descriptors 1 and 2,
    because worker processes (corpus, synth, HumanEval's sandbox) and XLA's C++ logging write there
    directly and would otherwise scribble over the progress view."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.log = open(self.path, "a", buffering=1, encoding="utf-8")
        self.saved_fds = os.dup(1), os.dup(2)
        self.saved_files = sys.stdout, sys.stderr
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)
        sys.stdout = sys.stderr = self.log
        return self.log

    def __exit__(self, *exc):
        self.log.flush()
        sys.stdout, sys.stderr = self.saved_files
        for fd, saved in zip((1, 2), self.saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        self.log.close()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_line(path: Path, limit: int = 100) -> str:
    """The last non-empty line of a log (for the progress view), without colour codes."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    line = next((ln for ln in reversed(lines) if ln.strip()), "")
    line = _ANSI.sub("", line).strip()
    return line if len(line) <= limit else line[:limit - 1] + "…"


@dataclass
class Status:
    state: str = "pending"     # pending | skipped | running | done | failed
    seconds: float | None = None
    started: float | None = None
    metrics: dict = field(default_factory=dict)
    error: str = ""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stage_table(run: Run, status: dict[str, Status]):
    from rich.table import Table
    colours = {"done": "green", "skipped": "cyan", "running": "yellow", "failed": "red", "pending": "dim"}
    table = Table(title=f"nanocode speedrun --preset {run.preset} -> {run.dir}", title_justify="left")
    for col in ("stage", "", "status", "time", "detail"):
        table.add_column(col, justify="right" if col == "time" else "left", no_wrap=col != "detail")
    for stage in PIPELINE:
        s = status[stage.name]
        seconds = time.time() - s.started if s.state == "running" else s.seconds
        if s.state == "running":
            detail = last_line(run.dir / "logs" / f"{stage.name}.log")
        elif s.state == "failed":
            detail = f"{s.error}  (log: logs/{stage.name}.log)"
        else:
            detail = ", ".join(f"{k} {_fmt(v)}" for k, v in s.metrics.items() if v is not None)
        table.add_row(stage.name, stage.what, f"[{colours[s.state]}]{s.state}[/]",
                      "" if seconds is None else f"{int(seconds // 60)}:{seconds % 60:04.1f}", detail)
    return table


def speedrun(preset: str = "cpu", out: Path | None = None, console=None) -> dict:
    """Runs (or continues) every stage; returns the summary also written to RUN/summary.json.
    Raises StageError with the stage's error when a stage fails (its log says the rest)."""
    from rich.console import Console
    from rich.live import Live

    run = open_run(out, preset)
    # The view writes to a copy of the terminal's descriptor: fds 1 and 2 go to the stage logs meanwhile.
    if console is None:
        terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        console = Console(file=terminal, width=None if terminal.isatty() else 160)
    status = {s.name: Status() for s in PIPELINE}
    timings = _read_timings(run)
    live = Live(get_renderable=lambda: stage_table(run, status), console=console, refresh_per_second=2,
                redirect_stdout=False, redirect_stderr=False, transient=False) if console.is_terminal else None
    if live:
        live.start()
    failure = None
    beside = None  # a stage running in a subprocess while the next stage runs here: (stage, process, log, next)
    try:
        for i, stage in enumerate(PIPELINE):
            if beside is not None and beside[3] != stage.name:  # the stage it ran beside is over: wait for it
                failure, beside = _join(beside, run, status, timings, console, live), None
                if failure is not None:
                    break
            s = status[stage.name]
            if stage.done(run):
                s.state, s.seconds = "skipped", timings.get(stage.name, {}).get("seconds")
                s.metrics = timings.get(stage.name, {}).get("metrics", {})
                if not live:
                    console.print(f"{stage.name}: complete already, skipped")
                continue
            s.state, s.started, cpu_start = "running", time.time(), _cpu_seconds()
            log_path = run.dir / "logs" / f"{stage.name}.log"
            command = stage.beside(run) if stage.beside is not None and i + 1 < len(PIPELINE) else None
            if command is not None:
                log = open(log_path, "a", buffering=1, encoding="utf-8")
                log.write(f"--- {stage.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} beside "
                          f"{PIPELINE[i + 1].name}: {' '.join(command)}\n")
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                beside = (stage, process, log, PIPELINE[i + 1].name)
                if not live:
                    console.print(f"{stage.name}: running beside {PIPELINE[i + 1].name} ({stage.what}; log: {log_path})")
                continue
            if not live:
                console.print(f"{stage.name}: running ({stage.what}; log: {run.dir / 'logs' / (stage.name + '.log')})")
            try:
                with _to_log(log_path) as log:
                    print(f"--- {stage.name} started {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
                    if stage.takes_console:
                        stage_console = Console(file=log, width=120, force_terminal=False)
                        s.metrics = stage.work(run, stage_console) or {}
                    else:
                        s.metrics = stage.work(run) or {}
                    print(f"--- {stage.name} finished in {time.time() - s.started:.1f} s", flush=True)
            except BaseException as e:  # KeyboardInterrupt too: the table says which stage, the log says why
                s.state, s.seconds = "failed", time.time() - s.started
                s.error = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
                with open(log_path, "a", encoding="utf-8") as f:
                    traceback.print_exc(file=f)
                failure = (stage.name, e)
                break
            s.seconds = time.time() - s.started
            # CPU seconds (this process and its finished workers) too: on a shared machine the wall time says
            # more about the neighbours than about the stage.
            _done(run, stage.name, s, timings, console, live, cpu_seconds=_cpu_seconds() - cpu_start)
        if beside is not None and failure is None:  # the pipeline ended with it still running
            failure, beside = _join(beside, run, status, timings, console, live), None
    finally:
        if beside is not None:  # another stage failed or was interrupted: this one cannot finish either
            stage, process, log, _ = beside
            process.terminate()
            process.wait()
            log.close()
            status[stage.name].state, status[stage.name].error = "failed", "stopped: another stage failed"
        if live:
            live.stop()
        else:
            console.print(stage_table(run, status))

    link = link_final_model(run)
    summary = {"run": str(run.dir), "preset": preset, "model": str(link) if link else None,
               "report": str(run.report / "report.md") if (run.report / "report.md").is_file() else None,
               "stages": {name: {"state": s.state, "seconds": None if s.seconds is None else round(s.seconds, 1),
                                 "cpu_seconds": timings.get(name, {}).get("cpu_seconds"),
                                 **({"error": s.error} if s.error else {})}
                          for name, s in status.items()},
               "metrics": {name: t.get("metrics", {}) for name, t in timings.items()}}
    write_json(run.dir / "summary.json", summary)
    print_summary(summary, console)
    if failure is not None:
        name, e = failure
        if isinstance(e, KeyboardInterrupt):
            raise e
        raise StageError(f"stage {name} failed: {status[name].error}\nsee {run.dir / 'logs' / (name + '.log')}; "
                            f"fix the cause and rerun the same command to continue from {name}") from e
    return summary


def _join(beside, run: Run, status: dict, timings: dict, console, live) -> tuple[str, BaseException] | None:
    """Waits for a stage that ran in a subprocess; returns (its name, the error) when it failed."""
    stage, process, log, _ = beside
    s = status[stage.name]
    code = process.wait()
    s.seconds = time.time() - s.started
    log.write(f"--- {stage.name} finished in {s.seconds:.1f} s (exit code {code})\n")
    log.close()
    if code != 0 or not stage.done(run):
        s.state, s.error = "failed", f"its subprocess exited with code {code}"
        return stage.name, StageError(s.error)
    s.metrics = stage.metrics(run) if stage.metrics else {}
    _done(run, stage.name, s, timings, console, live)
    return None


def _done(run: Run, name: str, s: Status, timings: dict, console, live, cpu_seconds: float | None = None) -> None:
    """A finished stage: its state, its line in timings.json, and (without the live view) a line of output."""
    s.state = "done"
    timings[name] = {"seconds": round(s.seconds, 1), "metrics": s.metrics}
    if cpu_seconds is not None:
        timings[name]["cpu_seconds"] = round(cpu_seconds, 1)
    write_json(run.dir / "timings.json", timings)
    if not live:
        console.print(f"{name}: done in {s.seconds:.1f} s " +
                      ", ".join(f"{k} {_fmt(v)}" for k, v in s.metrics.items() if v is not None))


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _read_timings(run: Run) -> dict:
    path = run.dir / "timings.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def print_summary(summary: dict, console) -> None:
    total = sum(s["seconds"] or 0 for s in summary["stages"].values())
    console.print(f"\n[bold]speedrun --preset {summary['preset']}[/] ({total / 60:.1f} min of stage time)",
                  highlight=False)
    console.print(f"  model:  {summary['model'] or 'none finished'}")
    if summary["model"]:
        console.print(f"          chat with it: nanocode chat --model {summary['model']}")
    console.print(f"  report: {summary['report'] or 'not written yet'}")
    key = [("base", "val bpb"), ("sft", "tool-call validity"), ("dpo", "pref. accuracy"),
           ("dpo", "call rate"), ("dpo", "sft call rate"), ("dpo", "final"), ("rl", "held-out before"),
           ("rl", "held-out after"), ("rl", "final"), ("eval", "code bpb"),
           ("eval", "humaneval pass@1"), ("eval", "agent success"), ("eval", "well-formed calls"),
           ("eval", "soul (all rules)")]
    shown = [(f"{stage} {name}", summary["metrics"].get(stage, {}).get(name)) for stage, name in key]
    shown = [(k, v) for k, v in shown if v is not None]
    if shown:
        console.print("  " + " | ".join(f"{k} {_fmt(v)}" for k, v in shown), highlight=False)


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        speedrun(a.preset, a.out)
    except StageError as e:
        return common.fail(e)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
