"""`nanocode report [RUN_DIR]`: one Markdown report, and a self-contained HTML copy, per training run.

What a run directory holds (training/pretrain.py; later stages follow the same layout, possibly in
subdirectories): log.jsonl (a `start` record with the settings and the machine, a record per step with
loss, tokens_per_s and mfu, val_bpb_* records, sample records, a `complete` record), complete.json, and
model directories (config.json, and eval/*.json once `nanocode eval` ran). The log's `data` names the token
shards, whose meta.json names the corpus (stats.json); the tokenizer's compression.json is found in
$NANOCODE_HOME/tokenizer when its tokenizer.json is the one the shards were made with.

The report: environment and config, corpus stats, tokenizer compression, loss / bits-per-byte /
throughput / MFU curves (matplotlib PNGs), a training summary, every eval table, samples, and a short
model card. A missing piece is named ("not run") rather than failing the report: a report on a
half-finished run is exactly when one is needed. Written to RUN_DIR/report/: report.md with the PNGs
beside it, and report.html with the PNGs inlined.
"""
import base64
import html
import json
import math
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from training import common
from training.common import StageError
from training.eval import agent as eval_agent, bpb as eval_bpb, humaneval as eval_humaneval
from training.eval import soul as eval_soul, tokenizer as eval_tokenizer
from training.eval.results import Table, fmt, read_results
from training.report_md import (conversation_text, data_section, environment, fence, kv_table, log_samples,
                                md_table, model_card, models_table)

# Every eval with its table-maker, in the order the report shows them.
EVALS = {"bpb": eval_bpb.summary_table, "tokenizer": eval_tokenizer.summary_table,
         "humaneval": eval_humaneval.summary_table, "agent": eval_agent.summary_table,
         "soul": eval_soul.summary_table}
SEARCH_DEPTH = 3  # how deep under RUN_DIR models and logs are looked for


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode report", description="Write RUN_DIR/report/report.md and a "
                                "self-contained report.html: config, data, curves, evals, card.")
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="The run directory (default: the "
                   "newest under $NANOCODE_HOME/runs).")
    return p


@dataclass
class Model:
    name: str                 # path relative to the run dir
    path: Path
    config: dict              # config.json
    evals: dict[str, dict]


@dataclass
class Stage:
    """A directory with a training log: one stage of the run (the run dir itself is ".")."""
    name: str
    records: list[dict]
    complete: dict | None

    @property
    def start(self) -> dict:
        return next((r for r in self.records if r.get("event") in ("start", "resume")), {})


@dataclass
class Run:
    path: Path
    models: list[Model] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    bad_log_lines: int = 0
    data: dict[str, tuple[str, dict]] = field(default_factory=dict)  # path -> (what it is, its JSON)


# --- finding things ---------------------------------------------------------------------------------

def default_run_dir() -> Path:
    """The newest run under $NANOCODE_HOME/runs."""
    from nanocode.lookup import nanocode_home

    runs = nanocode_home() / "runs"
    candidates = [p for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else []
    if not candidates:
        raise StageError(f"no training runs under {runs}; pass the run directory (`nanocode report DIR`) "
                          "or train one first (`nanocode train speedrun`)")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _walk(root: Path, depth: int = SEARCH_DEPTH):
    """root and its subdirectories down to `depth`, skipping hidden, checkpoint and output directories."""
    yield root
    if depth == 0:
        return
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if not child.name.startswith(".") and child.name not in ("report", "eval", "ckpt", "params"):
            yield from _walk(child, depth - 1)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _read_log(path: Path) -> tuple[list[dict], int]:
    records, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1  # a run killed mid-write leaves half a line; the rest is still worth plotting
                continue
            if isinstance(record, dict):
                records.append(record)
    return records, bad


def _find_data(run: Run) -> None:
    """The token shards each stage trained on, the corpus behind them, and the tokenizer's report."""
    from nanocode.lookup import nanocode_home

    for stage in run.stages:
        data = stage.start.get("data")
        if not data:
            continue
        token_dir = Path(data)
        meta = _read_json(token_dir / "meta.json")
        if meta is None:
            continue
        run.data[str(token_dir / "meta.json")] = ("token shards", meta)
        if meta.get("corpus"):
            corpus_stats = Path(meta["corpus"]) / "stats.json"
            stats = _read_json(corpus_stats)
            if stats is not None:
                run.data[str(corpus_stats)] = ("corpus", stats)
        tokenizer_dir = nanocode_home() / "tokenizer"
        compression = _read_json(tokenizer_dir / "compression.json")
        if compression is not None and _sha256(tokenizer_dir / "tokenizer.json") == meta.get("tokenizer_sha256"):
            run.data[str(tokenizer_dir / "compression.json")] = ("tokenizer", compression)


def _sha256(path: Path) -> str | None:
    import hashlib
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def collect(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StageError(f"{run_dir} is not a directory; pass a run directory such as "
                          "$NANOCODE_HOME/runs/<name>")
    run = Run(run_dir)
    for d in _walk(run_dir):
        rel = d.relative_to(run_dir).as_posix()
        config = _read_json(d / "config.json")
        if config is not None:
            run.models.append(Model(rel, d, config, read_results(d)))
        if (d / "log.jsonl").is_file():
            records, bad = _read_log(d / "log.jsonl")
            run.stages.append(Stage(rel, records, _read_json(d / "complete.json")))
            run.bad_log_lines += bad
        for name, what in (("stats.json", "corpus"), ("compression.json", "tokenizer")):
            data = _read_json(d / name)
            # other stages write a stats.json too (synth): a corpus is the one beside its parquet shards
            if data is not None and (what != "corpus" or any(d.glob("*.parquet"))):
                run.data[str(d / name)] = (what, data)
    if not (run.models or run.stages):
        raise StageError(f"{run_dir} holds no model (config.json) and no training log (log.jsonl); is it a "
                          "nanocode run directory?")
    _find_data(run)
    return run


# --- numbers out of the log ---------------------------------------------------------------------------

def series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the step records (not start/complete events) with a finite number under `key`."""
    xs, ys = [], []
    for r in records:
        v, s = r.get(key), r.get("step")
        if "event" not in r and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
                and isinstance(s, (int, float)):
            xs.append(s)
            ys.append(v)
    return xs, ys


def numeric_keys(records: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        if "event" not in r:
            keys.update((k, None) for k, v in r.items()
                        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool))
    return list(keys)


def settled_median(values: list[float]) -> float | None:
    """Median after dropping the first fifth of the steps (compilation and warm-up)."""
    values = values[len(values) // 5:] or values
    return statistics.median(values) if values else None


def stage_summary(stage: Stage) -> list[list[str]]:
    start, done = stage.start, stage.complete or {}
    steps, losses = series(stage.records, "loss")
    _, step_s = series(stage.records, "step_s")
    _, tok_s = series(stage.records, "tokens_per_s")
    _, mfu = series(stage.records, "mfu")
    bpb = done.get("val_bpb") or {k.removeprefix("val_bpb_"): series(stage.records, k)[1][-1]
                                  for k in numeric_keys(stage.records) if k.startswith("val_bpb_")}
    return [["status", "complete" if stage.complete else "incomplete (no complete.json)"],
            ["parameters", f"{start['params'] / 1e6:.1f}M" if "params" in start else "-"],
            ["steps", fmt(done.get("step") or (steps[-1] + 1 if steps else None))],
            ["tokens", f"{done['tokens']:,}" if "tokens" in done else "-"],
            ["final training loss", fmt(losses[-1] if losses else None, 4)],
            *[[f"validation bits/byte, {k}", fmt(v, 4)] for k, v in bpb.items()],
            ["training time (sum of step times)", f"{sum(step_s) / 60:.1f} min" if step_s else "-"],
            ["tokens per second (median)", f"{settled_median(tok_s):,.0f}" if tok_s else "-"],
            ["MFU (median)", f"{settled_median(mfu):.1f}%" if mfu else "-"],
            ["peak FLOP/s assumed for MFU", str(done.get("peak") or start.get("peak_flops") or "-")]]


# --- plots ------------------------------------------------------------------------------------------

# Which logged metrics go on which plot (matched on the key name).
PLOTS = [("loss", "training loss", re.compile(r"^loss$")),
         ("bpb", "validation bits per byte", re.compile(r"bpb")),
         ("throughput", "tokens per second", re.compile(r"^tokens_per_s$")),
         ("mfu", "MFU (%)", re.compile(r"^mfu$"))]


def make_plots(run: Run, out_dir: Path) -> list[tuple[str, Path]]:
    """One PNG per metric family, a line per (stage, key). Returns (title, path) for those with data."""
    import matplotlib
    matplotlib.use("Agg")  # no display on a training machine
    import matplotlib.pyplot as plt

    made = []
    for name, title, pattern in PLOTS:
        lines = []
        for stage in run.stages:
            for key in numeric_keys(stage.records):
                if pattern.search(key):
                    xs, ys = series(stage.records, key)
                    if len(xs) >= 2:
                        label = key if stage.name == "." else f"{stage.name}: {key}"
                        lines.append((label, xs, ys))
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.4), dpi=110)
        for label, xs, ys in lines:
            ax.plot(xs, ys, label=label, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        made.append((title, path))
    return made


# --- assembling ----------------------------------------------------------------------------------------

def markdown(run: Run, plots: list[tuple[str, Path]]) -> str:
    parts = [f"# nanocode run report: {run.path.resolve().name}", "",
             f"Run directory `{run.path.resolve()}`; report written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} "
             f"on {platform.node()}.", ""]

    parts += ["## Environment and config", ""]
    env = environment(run)
    parts.append(kv_table("Machine and software (from the training log)", env) if env else
                 "The run has no training log with a start record.\n")
    for stage in run.stages:
        for key, title in (("config", "training config"), ("model", "model config")):
            if isinstance(stage.start.get(key), dict):
                where = "" if stage.name == "." else f" of `{stage.name}`"
                parts.append(kv_table(f"The {title}{where}", stage.start[key]))
    if run.models:
        parts.append(models_table(run))

    parts += ["## Corpus and tokenizer", ""] + data_section(run)

    parts += ["## Training", ""]
    for stage in run.stages:
        where = "" if stage.name == "." else f" `{stage.name}`"
        parts.append(md_table(Table(f"Training{where}", ["", "value"], stage_summary(stage))))
    parts += [f"![{title}]({path.name})\n" for title, path in plots] or [
        "No training curves: no log.jsonl with at least two logged steps.\n"]
    if run.bad_log_lines:
        parts.append(f"({run.bad_log_lines} unreadable log lines skipped: a run killed mid-write leaves one.)\n")

    parts += ["## Evaluation", ""]
    for m in run.models:
        parts += [f"### `{m.name}`", ""]
        for name, make_table in EVALS.items():
            result = m.evals.get(name)
            if result is None:
                parts.append(f"{name}: not run (`nanocode eval {name} --model {m.path}`).\n")
            elif "error" in result:
                parts.append(f"{name}: {result['error']}\n")
            else:
                parts.append(md_table(make_table(result)))
    if not run.models:
        parts.append("No model directory in this run yet.\n")

    parts += ["## Samples", ""]
    samples = []
    for m in run.models:
        for s in m.evals.get("humaneval", {}).get("samples", [])[:2]:
            text = s.get("reply") or s["completion"] or "(empty: the model wrote nothing, or the prompt did not " \
                "fit its context)"
            samples += [f"HumanEval `{s['task_id']}` ({m.name}): {s['status']}", "",
                        fence(text, "" if s.get("reply") else "python")]
        for t in m.evals.get("agent", {}).get("transcripts", [])[:3]:
            verdict = "succeeded" if t["success"] else f"failed: {t['detail']}"
            samples += [f"Agent task `{t['id']}` ({m.name}), {verdict}", "", fence(conversation_text(t["messages"]))]
    for where, text in log_samples(run):
        samples += [f"Sample from the training log, {where}", "", fence(text[:2000])]
    parts += samples or ["No samples recorded.\n"]

    parts += ["## Model card", ""]
    parts += [model_card(m) for m in run.models] or ["No model in this run yet.\n"]
    return "\n".join(parts)


HTML_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 960px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.2em; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
td + td {{ text-align: right; font-variant-numeric: tabular-nums; }}
pre {{ background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; white-space: pre-wrap; }}
img {{ max-width: 100%; }}
</style></head><body>
{body}
</body></html>
"""


def to_html(md_text: str, images: dict[str, Path]) -> str:
    """The Markdown as one self-contained HTML file: images become data: URIs, raw HTML stays escaped."""
    from markdown_it import MarkdownIt  # installed with rich

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text)
    for name, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{data}"')
    title = md_text.splitlines()[0].lstrip("# ") if md_text else "nanocode report"
    return HTML_PAGE.format(title=html.escape(title), body=body)


def write_report(run_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Builds RUN_DIR/report/report.md and report.html; returns their paths."""
    run = collect(Path(run_dir) if run_dir else default_run_dir())
    out = run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(run, out)
    md_text = markdown(run, plots)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(md_text, encoding="utf-8")
    html_path.write_text(to_html(md_text, {p.name: p for _, p in plots}), encoding="utf-8")
    return md_path, html_path


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    try:
        md_path, html_path = write_report(a.run_dir)
    except StageError as e:
        return common.fail(e)
    print(f"wrote {md_path}\nwrote {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
