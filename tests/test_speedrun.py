"""The speedrun end to end on the `test` preset: every stage for real (two stdlib packages -> a depth-2 model
that `nanocode chat` loads), a failed stage that a rerun continues from, a finished run that a rerun skips."""
import io
import json
from dataclasses import replace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from training import pipeline, speedrun as sr
from training.common import StageError


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def markers(run_dir):
    """mtime of every stage's completion file: unchanged means the stage was not run again."""
    names = ["corpus/stats.json", "tokenizer/compression.json", "tokens/meta.json", "base/complete.json",
             "synth/stats.json", "sft/complete.json", "dpo/complete.json", "rl/complete.json", "eval/complete.json",
             "report/report.md"]
    return {n: (run_dir / n).stat().st_mtime_ns for n in names if (run_dir / n).is_file()}


def test_speedrun_fails_continues_and_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"

    # 1. SFT breaks: the stages before it finish, the error names the stage and its log, and the base
    #    model (the last one that finished) is already linked as RUN/model.
    sft_at = sr.STAGES.index("sft")

    def boom(run, console):
        print("sft is about to fail")
        raise RuntimeError("disk on fire")
    pipeline = list(sr.PIPELINE)
    monkeypatch.setattr(sr, "PIPELINE", pipeline[:sft_at] + [replace(pipeline[sft_at], work=boom)] +
                        pipeline[sft_at + 1:])
    with pytest.raises(StageError, match=r"stage sft failed: RuntimeError: disk on fire") as e:
        sr.speedrun("test", out, console=quiet())
    assert "logs/sft.log" in str(e.value) and "rerun the same command" in str(e.value)
    log = (out / "logs" / "sft.log").read_text()
    assert "sft is about to fail" in log and "Traceback" in log  # the stage's own output and the traceback
    summary = json.loads((out / "summary.json").read_text())
    assert [summary["stages"][s]["state"] for s in sr.STAGES] == ["done"] * sft_at + ["failed"] + ["pending"] * 4
    assert (out / "model").resolve() == (out / "base" / "model").resolve()
    before = markers(out)
    monkeypatch.setattr(sr, "PIPELINE", pipeline)

    # 2. The rerun continues at SFT; nothing before it runs again.
    view = quiet()
    summary = sr.speedrun("test", out, console=view)
    states = {s: summary["stages"][s]["state"] for s in sr.STAGES}
    assert states == {**{s: "skipped" for s in sr.STAGES[:sft_at]}, **{s: "done" for s in sr.STAGES[sft_at:]}}
    after = markers(out)
    assert all(after[k] == v for k, v in before.items()), "a finished stage ran again"
    assert set(after) == set(markers(out)) and len(after) == len(sr.STAGES)

    # The final model is RL's (or, when a gate refused, the one before: DPO's, or SFT's when DPO broke its
    # tool calls), linked (relative) as RUN/model, published for `nanocode chat`, and it loads.
    from nanocode.checkpoint import find_model, load_model
    from nanocode.template import stop_ids
    gate = json.loads((out / "dpo" / "gate.json").read_text())
    assert gate["use"] in ("sft", "dpo") and gate["samples"] == 6
    rl_gate = json.loads((out / "rl" / "gate.json").read_text())
    assert rl_gate["from"] == gate["use"] and rl_gate["use"] in ("rl", gate["use"])
    gate = rl_gate
    final = out / gate["use"] / "model"
    assert (out / "model").is_symlink() and (out / "model").resolve() == final.resolve()
    assert summary["model"] == str(out / "model")
    assert find_model(None).resolve() == final.resolve()
    model, tok, info = load_model(out / "model")
    assert info["meta"]["stage"] == gate["use"] and tok.vocab_size == 512 and model.config.depth == 2
    from nanocode.sampler import Sampler
    ids = Sampler(model).generate([tok.special("bos")] + tok.encode("def add(a, b):"), 8, temperature=0.0,
                                  stop=stop_ids(tok))
    assert 1 <= len(ids) <= 8 and all(0 <= i < tok.vocab_size for i in ids)

    # Every eval ran on that model, the report was written, every stage has a log, the view shows them all.
    evals = {p.stem for p in (final / "eval").glob("*.json")}
    assert evals == {"bpb", "tokenizer", "humaneval", "agent"}  # soul is off in the test budget
    assert summary["report"] == str(out / "report" / "report.md")
    report = (out / "report" / "report.md").read_text()
    assert f"{gate['use']}/model" in report and "Validation bits per byte" in report
    assert {p.stem for p in (out / "logs").glob("*.log")} == set(sr.STAGES)
    shown = view.file.getvalue()
    assert all(s in shown for s in sr.STAGES) and "nanocode chat --model" in shown
    assert summary["metrics"]["sft"]["tool-call validity"] is not None
    assert summary["metrics"]["eval"]["code bpb"] > 0

    # 3. A finished run: every stage is skipped and nothing is rewritten.
    again = sr.speedrun("test", out, console=quiet())
    assert {again["stages"][s]["state"] for s in sr.STAGES} == {"skipped"}
    assert markers(out) == after


def test_a_run_directory_keeps_its_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path / "home"))
    sr.open_run(tmp_path / "run", "test")
    with pytest.raises(StageError, match="holds a speedrun with --preset test"):
        sr.open_run(tmp_path / "run", "cpu")
    (tmp_path / "other" / "base").mkdir(parents=True)
    with pytest.raises(StageError, match="not made by the speedrun"):
        sr.open_run(tmp_path / "other", "test")


def test_cli_rejects_an_unknown_preset(tmp_path, monkeypatch):
    from nanocode.cli import app
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["train", "speedrun", "--preset", "huge", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown preset 'huge'" in result.output and "test, cpu, gpu" in result.output
    assert not (tmp_path / "r").exists()


def test_budget_table_matches_the_stage_presets():
    """Every budget names presets and options the stages accept (a typo would only show up mid-run)."""
    from training.config import from_preset as base_preset
    from training.dpo import from_preset as dpo_preset
    from training.rl import from_preset as rl_preset
    from training.sft import from_preset as sft_preset
    for name, budget in pipeline.BUDGETS.items():
        base = pipeline._preset(budget.base, base_preset)
        pipeline._preset(budget.sft, sft_preset)
        pipeline._preset(budget.dpo, dpo_preset)
        pipeline._preset(budget.rl, rl_preset)
        assert budget.vocab >= 512, name
        assert base.total_batch % (base.device_batch * base.seq_len) == 0, name


def test_final_model_follows_the_tool_call_gate(tmp_path):
    """DPO's model ships unless the gate found it lost its tool calls; then SFT's; a half-finished run
    ships the last stage that completed."""
    run = pipeline.Run(tmp_path, "test", pipeline.BUDGETS["test"])
    assert pipeline.final_model(run) is None
    for stage in ("base", "sft", "dpo"):
        (tmp_path / stage / "model").mkdir(parents=True)
        (tmp_path / stage / "model" / "config.json").write_text("{}")
    (tmp_path / "base" / "complete.json").write_text("{}")
    assert pipeline.final_model(run) == tmp_path / "base" / "model"  # sft and dpo not complete: their models are partial
    (tmp_path / "sft" / "complete.json").write_text("{}")
    (tmp_path / "dpo" / "complete.json").write_text("{}")
    assert not pipeline._dpo_done(run)  # trained, but not yet gated: a rerun measures the gate
    (tmp_path / "dpo" / "gate.json").write_text(json.dumps({"use": "dpo"}))
    assert pipeline._dpo_done(run) and pipeline.final_model(run) == tmp_path / "dpo" / "model"
    (tmp_path / "dpo" / "gate.json").write_text(json.dumps({"use": "sft"}))
    assert pipeline.final_model(run) == tmp_path / "sft" / "model"
    # RL starts from what the DPO gate chose and ships only past its own gate
    (tmp_path / "rl" / "model").mkdir(parents=True)
    (tmp_path / "rl" / "model" / "config.json").write_text("{}")
    (tmp_path / "rl" / "complete.json").write_text("{}")
    assert not pipeline._rl_done(run) and pipeline.final_model(run, before="rl") == tmp_path / "sft" / "model"
    (tmp_path / "rl" / "gate.json").write_text(json.dumps({"use": "rl"}))
    assert pipeline._rl_done(run) and pipeline.final_model(run) == tmp_path / "rl" / "model"
    (tmp_path / "rl" / "gate.json").write_text(json.dumps({"use": "sft"}))
    assert pipeline.final_model(run) == tmp_path / "sft" / "model"


def test_a_stage_beside_the_next_runs_in_a_subprocess_and_is_waited_for(tmp_path, monkeypatch):
    """The gpu budget's synth runs beside base: the stage after both waits for it, and its failure stops
    the run with its name (stages here are small stand-ins; the real synth command is checked below)."""
    import sys
    seen = {}

    def beside(run):  # writes its output after a moment, as a slow subprocess would
        code = (f"import pathlib, time; time.sleep(1.0); p = pathlib.Path({str(run.corpus)!r}); "
                "p.mkdir(); (p / 'done').write_text('x')")
        return [sys.executable, "-c", code]

    def next_stage(run):
        seen["beside done when the next started"] = (run.corpus / "done").exists()
        run.tokenizer.mkdir()
        (run.tokenizer / "done").write_text("x")
        return {}

    def after(run):
        seen["beside done when the one after started"] = (run.corpus / "done").exists()
        run.tokens.mkdir()
        (run.tokens / "done").write_text("x")
        return {}

    def done(name):
        return lambda run: (getattr(run, name) / "done").exists()
    stages = [pipeline.Stage("corpus", "beside", done("corpus"), None, beside=beside, metrics=lambda r: {"ok": 1}),
              pipeline.Stage("tokenizer", "next", done("tokenizer"), next_stage),
              pipeline.Stage("tokens", "after", done("tokens"), after)]
    monkeypatch.setattr(sr, "PIPELINE", stages)
    console = Console(file=io.StringIO(), width=200)
    summary = sr.speedrun("test", tmp_path / "run", console=console)
    assert seen == {"beside done when the next started": False, "beside done when the one after started": True}
    assert {k: v["state"] for k, v in summary["stages"].items()} == {"corpus": "done", "tokenizer": "done",
                                                                    "tokens": "done"}
    assert summary["metrics"]["corpus"] == {"ok": 1}

    stages[0] = replace(stages[0], beside=lambda run: [sys.executable, "-c", "raise SystemExit(3)"])
    monkeypatch.setattr(sr, "PIPELINE", stages)
    with pytest.raises(StageError, match="stage corpus failed: its subprocess exited with code 3"):
        sr.speedrun("test", tmp_path / "run2", console=console)

    gpu = pipeline.Run(tmp_path / "g", "gpu", pipeline.BUDGETS["gpu"])
    command = pipeline._synth_command(gpu)
    assert command[3:5] == ["data", "synth"] and str(gpu.synth) in command and "50000" in command
    assert pipeline._synth_command(pipeline.Run(tmp_path / "t", "test", pipeline.BUDGETS["test"])) is None
