"""`nanocode train base` end to end on a tiny corpus: the loss falls, the outputs are complete, a rerun of a
finished run does nothing, a run killed with SIGKILL resumes (past a damaged checkpoint) with exactly the
losses of an uninterrupted run, and bad flags or data give clear errors."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from conftest import SAMPLE_TEXT
from nanocode.cli import app
from nanocode.tokenizer import SPECIAL_TOKENS
from training.config import from_preset
from training.common import StageError
from training.pretrain import train_base
from training.data.shards import dtype_for, file_sha256, write_meta, write_split

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_tokenizer):
    """Token shards of a small code + prose corpus made with the real shard writer, and its tokenizer."""
    root = tmp_path_factory.mktemp("data")
    tokenizer = root / "tokenizer.json"
    tiny_tokenizer.save(tokenizer)
    texts = [(("prose" if "grep" in t or "Ünïcödé" in t else "code"), t * 3) for t in SAMPLE_TEXT[:5]] * 8

    def docs(items):
        for kind, text in items:
            yield np.array(tiny_tokenizer.encode(text)), kind, len(text.encode())
    tokens = root / "tokens"
    tokens.mkdir()
    splits = {"train": write_split(tokens, "train", docs(texts), dtype_for(tiny_tokenizer.vocab_size)),
              "val": write_split(tokens, "val", docs(texts[:10]), dtype_for(tiny_tokenizer.vocab_size))}
    special = {name.strip("<|>"): tiny_tokenizer.special(name) for name in SPECIAL_TOKENS}
    write_meta(tokens, file_sha256(tokenizer), tiny_tokenizer.vocab_size, special, splits)
    return tokens, tokenizer


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One NANOCODE_HOME (and so one compilation cache) for the in-process runs and the subprocess."""
    path = tmp_path_factory.mktemp("home")
    old = os.environ.get("NANOCODE_HOME")
    os.environ["NANOCODE_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NANOCODE_HOME", None)
    else:
        os.environ["NANOCODE_HOME"] = old


def run(cfg, out, data, **kw):
    buf = io.StringIO()
    summary = train_base(cfg, out, data[0], data[1], console=Console(file=buf, width=200), **kw)
    return summary, buf.getvalue()


def step_losses(log: Path, after_event: str | None = None) -> dict[int, float]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if after_event:
        last = max(i for i, r in enumerate(records) if r.get("event") == after_event)
        records = records[last:]
    return {r["step"]: r["loss"] for r in records if "loss" in r and "event" not in r}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, home):
    out = tmp_path_factory.mktemp("reference") / "run"
    summary, output = run(from_preset("test"), out, data)
    return out, summary, output


def test_pretraining_lowers_the_loss_and_writes_a_loadable_model(reference, tiny_tokenizer):
    from nanocode.checkpoint import load_model
    out, summary, output = reference
    losses = step_losses(out / "log.jsonl")
    assert sorted(losses) == list(range(16))
    assert np.mean([losses[s] for s in range(12, 16)]) < 0.5 * np.mean([losses[s] for s in range(4)])
    assert set(summary["val_bpb"]) == {"code", "prose"} and all(np.isfinite(list(summary["val_bpb"].values())))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("val_bpb_code" in r for r in records) and any("sample" in r for r in records)
    assert all(k in records[1] for k in ("tokens_per_s", "mfu", "lr_mult"))
    model, tok, info = load_model(out / "model")
    assert model.config.depth == 2 and tok.vocab_size == tiny_tokenizer.vocab_size
    assert info["meta"]["stage"] == "base" and (out / "complete.json").is_file()
    assert "step     16/16" in output and "validation bits/byte" in output


def test_a_finished_run_is_not_trained_again(reference, data):
    out, summary, _ = reference
    again, output = run(from_preset("test"), out, data)
    assert "already complete" in output and again["step"] == summary["step"]


def test_kill_9_then_rerun_resumes_with_the_same_losses(reference, tmp_path, data, home):
    ref_losses = step_losses(reference[0] / "log.jsonl")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.pretrain", "--preset", "test", "--out", str(out),
           "--data", str(data[0]), "--tokenizer", str(data[1])]
    env = {**os.environ, "NANOCODE_HOME": str(home), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill it mid-run, once a checkpoint exists
        if (out / "log.jsonl").is_file() and max(step_losses(out / "log.jsonl"), default=-1) >= 9:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = sorted(int(p.name) for p in (out / "ckpt").iterdir() if p.name.isdigit())
    assert steps, "no checkpoint was finished before the kill"

    # Different settings on the same --out are refused, not silently mixed.
    with pytest.raises(StageError, match="different settings"):
        run(from_preset("test", seed=1), out, data)

    # Damage the newest checkpoint: it must be reported and skipped, never loaded.
    newest = out / "ckpt" / str(steps[-1])
    for f in (newest / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    summary, output = run(from_preset("test"), out, data)
    assert f"checkpoint step {steps[-1]}" in output and "unusable" in output
    assert (out / "ckpt_corrupt").is_dir()
    resumed = step_losses(out / "log.jsonl", after_event="resume" if len(steps) > 1 else "start")
    start = min(resumed)
    assert start == (steps[-2] if len(steps) > 1 else 0)
    assert f"resuming from step {start}" in output or start == 0
    assert sorted(resumed) == list(range(start, 16))
    np.testing.assert_allclose([resumed[s] for s in resumed], [ref_losses[s] for s in resumed], rtol=1e-6)
    assert summary["val_bpb"] == pytest.approx(reference[1]["val_bpb"], rel=1e-6)


def test_bad_flags_and_data_get_clear_errors(tmp_path, data, home):
    runner = CliRunner()
    cases = [
        (["--preset", "huge"], "unknown preset"),
        (["--preset", "test", "--total-batch", "100"], "not a multiple"),
        (["--preset", "test", "--depth", "0"], "must be >= 1"),
        (["--preset", "test", "--remat", "some"], "--remat"),
        (["--preset", "test", "--data", str(tmp_path / "nothing")], "no token shards"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["train", "base", "--out", str(tmp_path / "out"), "--tokenizer", str(data[1]),
                                     *(["--data", str(data[0])] if "--data" not in args else []), *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    other = tmp_path / "other.json"
    other.write_text(data[1].read_text().replace('"<|bos|>"', '"<|bos|>"', 1) + " ")
    with pytest.raises(StageError, match="different tokenizer"):
        run(from_preset("test"), tmp_path / "out2", (data[0], other))
