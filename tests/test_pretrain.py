"""`nanocode train base` end to end on a tiny corpus: the loss falls, the outputs are complete, a rerun of a
finished run does nothing, a run killed with SIGKILL resumes (past a damaged checkpoint) with exactly the
losses of an uninterrupted run, a run whose loss turns NaN rolls back to its last good checkpoint, and bad
flags or data give clear errors."""
import io
import json
import os
import shutil
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
    summary, output = run(from_preset("test", keep_checkpoints=3), out, data)  # steps 8, 12, 16 stay
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


def poison(ckpt_dir: Path, step: int, vocab: int) -> None:
    """Rewrite checkpoint `step` with the MLP input weights x1e30, as a flipped exponent bit in RAM before the
    save would: the files are consistent (their manifest is right) and finite, but training from them is not."""
    import jax
    from flax import nnx
    from nanocode.model import GPT
    from training import mesh as meshlib
    from training.checkpointing import Checkpoints
    from training.optim import make_optimizer
    from training.train_step import abstract_state, init_state
    cfg = from_preset("test")
    optimizer = make_optimizer(cfg, cfg.total_steps(vocab))
    def build():
        return init_state(nnx.split(GPT(cfg.model_config(vocab), rngs=nnx.Rngs(cfg.seed)))[1].to_pure_dict(), optimizer)
    ckpt = Checkpoints(ckpt_dir, keep=3, log=lambda m: None)
    restored, state, meta = ckpt.restore_latest(abstract_state(build, meshlib.make_mesh(), cfg.fsdp)[0])
    assert restored == step
    state["params"] = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 1e30 if "c_fc" in jax.tree_util.keystr(path) else x, state["params"])
    shutil.rmtree(ckpt_dir / str(step))
    ckpt.manager.reload()
    ckpt.save(step, state, meta, wait=True)
    ckpt.close()


def test_a_nan_loss_rolls_back_to_the_last_good_checkpoint(reference, tmp_path, data, home, tiny_tokenizer):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)  # checkpoints 8, 12, 16 of a finished run; make it a run killed after 12
    shutil.rmtree(out / "model")
    (out / "complete.json").unlink()
    shutil.rmtree(out / "ckpt" / "16")
    poison(out / "ckpt", 12, tiny_tokenizer.vocab_size)
    with pytest.raises(StageError, match="the loss became nan at step 12; moved the newest checkpoint \\(step 12\\) "
                                         ".*resume from step 8, the last good checkpoint"):
        run(from_preset("test"), out, data)
    assert sorted(int(p.name) for p in (out / "ckpt").iterdir() if p.name.isdigit()) == [8]
    assert len(list((out / "ckpt_corrupt").iterdir())) == 1
    summary, output = run(from_preset("test"), out, data)
    assert "resuming from step 8" in output
    resumed = step_losses(out / "log.jsonl", after_event="resume")
    assert sorted(resumed) == list(range(8, 16))
    ref_losses = step_losses(reference[0] / "log.jsonl")
    np.testing.assert_allclose([resumed[s] for s in resumed], [ref_losses[s] for s in resumed], rtol=1e-6)
    assert summary["val_bpb"] == pytest.approx(reference[1]["val_bpb"], rel=1e-6)
