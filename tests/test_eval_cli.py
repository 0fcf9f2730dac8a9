"""`nanocode eval ...` and `nanocode report` on a saved tiny model: tables printed, JSON written, report built."""
import json

import pytest
from typer.testing import CliRunner

from nanocode.cli import app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    from flax import nnx

    from nanocode.checkpoint import save_model
    from nanocode.model import GPT, ModelConfig

    run = tmp_path_factory.mktemp("run")
    model = GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=512), rngs=nnx.Rngs(0))
    return save_model(run / "sft", model, tiny_tokenizer, meta={"stage": "sft"})


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_commands_write_json_next_to_the_model_and_report_collects_them(model_dir):
    out = invoke("eval", "humaneval", "--model", model_dir, "--limit", 2, "--max-new-tokens", 4, "--timeout", 5)
    assert "pass@1" in out and "mode: chat" in out
    he = json.loads((model_dir / "eval" / "humaneval.json").read_text())
    assert he["problems"] == 2 and he["mode"] == "chat" and he["model"] == str(model_dir.resolve())

    out = invoke("eval", "agent", "--model", model_dir, "--per-kind", 1, "--kinds", "locate,run",
                 "--max-steps", 1, "--max-reply-tokens", 4)
    assert "task success" in out and "unseen phrasings" in out and "repeated failed call" in out
    agent = json.loads((model_dir / "eval" / "agent.json").read_text())  # each task asked seen and unseen
    assert agent["n_tasks"] == 4 and set(agent["success_by_kind"]) == {"locate", "run"}
    assert agent["seen"]["n_tasks"] == agent["unseen"]["n_tasks"] == 2 and set(agent["by_kind"]) == {"locate", "run"}

    md = model_dir.parent / "report" / "report.md"
    out = invoke("report", model_dir.parent)
    assert str(md) in out and md.is_file() and (md.parent / "report.html").is_file()
    text = md.read_text()
    assert "HumanEval (chat)" in text and "Agent tasks" in text and "soul: not run" in text


def test_eval_errors_are_clear(model_dir, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["eval", "humaneval", "--model", str(tmp_path), "--limit", "1"])
    assert bad.exit_code == 2 and "no model there" in bad.output
    bad = runner.invoke(app, ["eval", "humaneval", "--model", str(model_dir), "--samples", "2", "--k", "5"])
    assert bad.exit_code == 2 and "between 1 and --samples" in bad.output
    bad = runner.invoke(app, ["eval", "agent", "--model", str(model_dir), "--kinds", "teleport"])
    assert bad.exit_code == 2 and "unknown task kind" in bad.output
    bad = runner.invoke(app, ["eval", "tokenizer", "--model", str(model_dir), "--data", str(tmp_path)])
    assert bad.exit_code == 2 and "nanocode data corpus" in bad.output
    bad = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "not a directory" in bad.output
