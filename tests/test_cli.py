"""The `nanocode` command routes every stage to the module that owns its flags: the help lists stop short of
importing JAX, a stage's --help is its own parser's, every flag the old typer commands had still parses, and a
user error is one `error:` line with exit status 2."""
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nanocode.cli import app

REPO = Path(__file__).parent.parent


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["data", "--help"], ["eval", "--help"],
                                  ["bench", "--help"], ["train", "base", "--help"], ["train", "speedrun", "--help"],
                                  ["serve", "--help"]])
def test_help_imports_no_jax(args):
    code = ("import sys\nfrom nanocode.cli import app\ntry:\n    app(sys.argv[1:], standalone_mode=False)\n"
            "except SystemExit:\n    pass\nprint('JAX' if 'jax' in sys.modules else 'NO JAX')")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO JAX"), out.stdout[-500:]


def test_groups_list_their_stages_with_one_line_of_help():
    out = CliRunner().invoke(app, ["train", "--help"]).output
    for name in ("tokenizer", "base", "sft", "dpo", "speedrun"):
        assert name in out
    assert "Pretrain a base model" in out
    out = CliRunner().invoke(app, ["eval", "--help"]).output
    assert all(name in out for name in ("bpb", "humaneval", "agent", "soul", "tokenizer"))


def test_a_stage_help_is_its_own_parser():
    result = CliRunner().invoke(app, ["train", "base", "--help"])
    assert result.exit_code == 0
    assert "usage: nanocode train base" in result.output
    assert "--total-batch" in result.output and "--matmul-dtype" in result.output and "--no-fsdp" not in result.output


# Every option the typer commands had before the stages owned their flags (README and scripts use them).
OLD_FLAGS = {
    "training.pretrain": ["--preset", "cpu", "--depth", "4", "--out", "o", "--data", "d", "--tokenizer", "t",
                          "--steps", "3", "--seq-len", "64", "--device-batch", "2", "--total-batch", "128",
                          "--matrix-lr", "0.01", "--embedding-lr", "0.1", "--unembedding-lr", "0.002", "--fim-rate",
                          "0.5", "--eval-every", "1", "--save-every", "1", "--sample-every", "0", "--remat", "dots",
                          "--residual-dtype", "float32", "--matmul-dtype", "bfloat16", "--fsdp", "--seed", "1",
                          "--coordinator", "h:1", "--num-processes", "1", "--process-id", "0"],
    "training.sft": ["--preset", "test", "--base", "b", "--data", "d", "--out", "o", "--tokens", "t", "--steps", "2",
                     "--epochs", "1.5", "--seq-len", "64", "--device-batch", "2", "--batch-rows", "4", "--lr-frac",
                     "0.5", "--replay", "0.1", "--eval-every", "1", "--eval-samples", "2", "--save-every", "1",
                     "--remat", "none", "--no-fsdp", "--seed", "0", "--coordinator", "h:1", "--num-processes", "1",
                     "--process-id", "0"],
    "training.dpo": ["--preset", "test", "--sft", "s", "--data", "d", "--out", "o", "--from-sessions", "--sessions",
                     "p", "--beta", "0.2", "--nll", "0", "--steps", "2", "--epochs", "1", "--seq-len", "64",
                     "--device-batch", "2", "--batch-pairs", "4", "--lr-frac", "0.5", "--eval-every", "1",
                     "--save-every", "1", "--remat", "full", "--fsdp", "--seed", "0", "--coordinator", "h:1",
                     "--num-processes", "1", "--process-id", "0"],
    "training.speedrun": ["--preset", "test", "--out", "o"],
    "training.data.corpus": ["--src", "a", "--src", "b", "--out", "o", "--only-src", "--licenses", "permissive",
                             "--repo-fraction", "0.2", "--val-fraction", "0.1", "--max-bytes", "50M", "--workers", "1"],
    "training.data.shards": ["--corpus", "c", "--tokenizer", "t", "--out", "o"],
    "training.data.tokenizer_train": ["--vocab", "300", "--corpus", "c", "--out", "o", "--max-bytes", "200M",
                                      "--no-baseline"],
    "training.eval.bpb": ["--model", "m", "--data", "d", "--max-tokens", "10", "--batch-rows", "2"],
    "training.eval.humaneval": ["--model", "m", "--samples", "2", "--k", "1", "--k", "2", "--limit", "3", "--mode",
                                "base", "--temperature", "0.5", "--top-p", "0.9", "--max-new-tokens", "8",
                                "--batch-size", "2", "--timeout", "5", "--memory-mb", "512", "--workers", "1",
                                "--seed", "3"],
    "training.eval.agent": ["--model", "m", "--per-kind", "1", "--kinds", "locate", "--max-steps", "2",
                            "--max-reply-tokens", "8", "--temperature", "0", "--seed", "1"],
    "training.eval.soul": ["--model", "m", "--samples", "2", "--temperature", "0.7", "--max-steps", "3", "--seed", "1"],
    "training.eval.tokenizer": ["--model", "m", "--data", "d", "--max-mb", "1.5", "--split", "train"],
    "training.report": ["run_dir"],
    "nanocode.bench_sample": ["--model", "m", "--depth", "4", "--vocab", "512", "--seq-len", "64", "--batch", "2",
                              "--prompt-len", "8", "--new-tokens", "8", "--repeats", "1", "--unroll", "1,4",
                              "--chunk", "4", "--json"],
}


@pytest.mark.parametrize("module", sorted(OLD_FLAGS))
def test_every_old_flag_still_parses(module):
    import importlib
    importlib.import_module(module).flags().parse_args(OLD_FLAGS[module])


def test_config_flags_default_to_the_preset():
    from training import pretrain
    from training.common import config_overrides
    from training.config import TrainConfig, from_preset
    a = pretrain.flags().parse_args(["--preset", "cpu", "--depth", "6", "--fsdp"])
    cfg = from_preset(a.preset, **config_overrides(a, TrainConfig))
    assert cfg.depth == 6 and cfg.fsdp is True and cfg.steps == from_preset("cpu").steps
    a = pretrain.flags().parse_args(["--fsdp", "false"])  # python -m training.pretrain's old spelling
    assert a.fsdp is False and a.depth is None
    from training import dpo
    assert dpo.flags().parse_args(["--no-sessions"]).from_sessions is False
    assert dpo.flags().parse_args([]).from_sessions is None  # the preset's


def test_user_errors_are_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path))
    for args, message in ((["train", "base", "--depth", "x"], "invalid int value"),
                          (["train", "sft", "--preset", "huge"], "unknown preset 'huge'"),
                          (["data", "corpus", "--only-src"], "--only-src needs at least one --src"),
                          (["train", "tokenizer", "--max-bytes", "5x"], "is not a size")):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.output)
