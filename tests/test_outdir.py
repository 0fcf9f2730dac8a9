"""Output directories (training/outdir.py) on the real stages: nothing the project did not write is deleted
or overwritten, one process writes an --out at a time (a second one is told who holds it), a dead holder's
lock is gone with it, and bad inputs get one-line errors instead of tracebacks or zeros."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nanocode.cli import app
from training import outdir
from training.common import StageError
from training.data import corpus, shards
from training.data.corpus import CorpusConfig, build_corpus, directory_sources

REPO = Path(__file__).resolve().parent.parent


def module(name: str, n: int = 12) -> str:
    body = "\n\n".join(f"def {name}_{i}(x, y={i}):\n    \"\"\"Return {name} number {i}.\"\"\"\n"
                       f"    total = x * {i} + y\n    return total - {i * 7 % 13}" for i in range(n))
    return f'"""The {name} module."""\nimport os\n\n\n{body}\n'


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    (root / "pkg").mkdir(parents=True)
    for name in ("alpha", "beta", "gamma", "delta"):
        (root / "pkg" / f"{name}.py").write_text(module(name))
    return root


def build(src, out, **kw):
    return build_corpus(CorpusConfig(sources=tuple(directory_sources([src])), out=out, workers=1, **kw),
                        progress=False)


def test_data_corpus_refuses_a_directory_of_other_files_and_keeps_them(src, tmp_path, capsys):
    theirs = tmp_path / "x"
    theirs.mkdir()
    (theirs / "t.txt").write_text("thesis\n")
    code = corpus.main(["--only-src", "--src", str(src), "--out", str(theirs), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "not empty (t.txt)" in err and "not made by nanocode" in err
    assert sorted(os.listdir(theirs)) == ["t.txt"] and (theirs / "t.txt").read_text() == "thesis\n"


def test_rerunning_into_our_own_directory_replaces_only_our_files(src, tmp_path):
    out = tmp_path / "c"
    first = build(src, out)
    assert (out / outdir.MARKER).is_file() and json.loads((out / outdir.MARKER).read_text())["stage"] == "data corpus"
    (out / "notes.txt").write_text("mine\n")            # a file someone put in our directory later
    (out / "train_00007.parquet").write_text("stale")   # a shard of an older, bigger build
    (src / "pkg" / "beta.py").unlink()
    stats = build(src, out)
    assert stats["kept"]["files"] == first["kept"]["files"] - 1 and (out / "notes.txt").read_text() == "mine\n"
    assert not (out / "train_00007.parquet").exists() and not (out / ".partial").exists()
    assert not list(tmp_path.glob(".c*"))  # nothing written beside it


def test_a_corpus_written_before_the_marker_is_adopted(src, tmp_path):
    out = tmp_path / "c"
    build(src, out)
    outdir.release(out)
    (out / outdir.MARKER).unlink()  # as an older nanocode left it: stats.json and shards only
    build(src, out)
    assert (out / outdir.MARKER).is_file()


def test_data_shards_claims_its_out_too(src, tmp_path, tiny_tokenizer):
    build(src, tmp_path / "c")
    tiny_tokenizer.save(tmp_path / "tokenizer.json")
    with pytest.raises(StageError, match="holds the output of `nanocode data corpus`"):
        shards.tokenize_corpus(tmp_path / "c", tmp_path / "tokenizer.json", tmp_path / "c", progress=False)
    for _ in range(2):
        meta = shards.tokenize_corpus(tmp_path / "c", tmp_path / "tokenizer.json", tmp_path / "t", progress=False)
    assert meta["splits"]["train"]["n_docs"] > 0 and shards.is_complete(tmp_path / "t")


HOLD = textwrap.dedent("""
    import sys, time
    from training import outdir
    outdir.claim(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    time.sleep(60)
""")


def hold(path: Path, stage: str) -> subprocess.Popen:
    """Another process that claims `path` and keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), stage], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_told_who_holds_the_directory_and_a_dead_holder_frees_it(src, tmp_path):
    out, run = tmp_path / "c", tmp_path / "run"
    holders = [hold(out, "data corpus"), hold(run, "train base")]
    try:
        with pytest.raises(StageError, match=f"is being written by pid {holders[0].pid} .*; wait for it"):
            build(src, out)
        from training.config import from_preset
        from training.pretrain import train_base
        with pytest.raises(StageError, match=f"is being written by pid {holders[1].pid} "):
            train_base(from_preset("test"), run, tmp_path / "no-data", tmp_path / "no-tokenizer.json")
        # On the command line: that one line, exit 2.
        result = subprocess.run([sys.executable, "-m", "training.data.corpus", "--only-src", "--src", str(src),
                                 "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 2 and f"pid {holders[0].pid}" in result.stderr
        assert "Traceback" not in result.stderr and not (out / "stats.json").exists()
    finally:
        for holder in holders:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
    build(src, out)  # kill -9 left the marker, not the lock
    assert json.loads((out / outdir.MARKER).read_text())["pid"] == os.getpid() and (out / "stats.json").is_file()


def test_training_outs_that_are_files_or_other_peoples_directories_are_refused(tmp_path):
    runner = CliRunner()
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = runner.invoke(app, ["train", "base", "--preset", "test", "--out", str(afile)])
    assert result.exit_code == 2 and "is a file, not a directory" in result.output
    theirs = tmp_path / "theirs"
    (theirs / "model").mkdir(parents=True)
    (theirs / "model" / "weights.bin").write_text("someone's model")
    result = runner.invoke(app, ["train", "base", "--preset", "test", "--out", str(theirs)])
    assert result.exit_code == 2 and "not made by nanocode" in result.output
    assert (theirs / "model" / "weights.bin").read_text() == "someone's model"
    sft_run = tmp_path / "sft"
    outdir.claim(sft_run, "train sft").release()
    with pytest.raises(StageError, match="holds the output of `nanocode train sft`"):
        outdir.claim(sft_run, "train base", outdir.RUN_FILES)


def test_bad_corpus_flags_are_one_line_errors(src, tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    cases = [(["--max-bytes=-5M"], "a size must be positive"),
             (["--workers", "-2"], "must be 0 or more"),
             (["--src", str(tmp_path / "empty")], "holds no source files"),
             (["--out", "."], "is the directory you are in")]
    monkeypatch.chdir(tmp_path / "empty")
    for extra, message in cases:
        argv = ["--only-src", "--src", str(src), "--out", str(tmp_path / "c"), *extra]
        if "--src" in extra:
            argv = ["--only-src", *extra, "--out", str(tmp_path / "c")]
        try:
            code = corpus.main(argv)
        except SystemExit as e:  # argparse's own errors exit
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert os.listdir(tmp_path / "empty") == []


def test_eval_tokenizer_rejects_a_bogus_split_or_budget(tmp_path, capsys):
    from training.eval import tokenizer as eval_tokenizer
    for argv, message in ((["--split", "bogus"], "invalid choice"), (["--max-mb", "-1"], "must be a positive")):
        with pytest.raises(SystemExit) as e:
            eval_tokenizer.main(["--model", str(tmp_path), *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_session_nested_too_deep_is_a_clear_error(tmp_path):
    from agent.session import Session, SessionError, sessions_dir
    path = sessions_dir(tmp_path) / "deep.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(SessionError, match="nested too deeply"):
        Session.load("deep", tmp_path)
