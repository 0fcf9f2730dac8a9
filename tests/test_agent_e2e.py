"""End to end through the CLI: `nanocode run` on a real (random-init) tiny model saved as a model directory,
and the start-up errors a user sees before any model runs."""
import json

import pytest
from flax import nnx
from typer.testing import CliRunner

from nanocode.checkpoint import TRAIN_COMMAND, save_model
from nanocode.cli import app
from nanocode.model import GPT, ModelConfig

EVENT_TYPES = {"text", "tool_call", "permission", "tool_result", "turn_end", "error"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NANOCODE_MODEL", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    config = ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=256)
    return save_model(tmp_path_factory.mktemp("m") / "tiny", GPT(config, rngs=nnx.Rngs(0)), tiny_tokenizer)


def test_run_json_with_a_real_tiny_model(home, model_dir, tmp_path):
    (tmp_path / "ws").mkdir()
    result = CliRunner().invoke(app, ["run", "-p", "what is in this repository?", "--json", "--model",
                                      str(model_dir), "--cwd", str(tmp_path / "ws"), "--max-steps", "2"])
    assert result.exit_code in (0, 1), result.output  # a random model may end the turn early; it never crashes
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(e["type"] in EVENT_TYPES for e in events)
    assert [e["type"] for e in events].count("turn_end") == 1 and events[-1]["type"] == "turn_end"
    assert events[-1]["reason"] in {"done", "max_steps", "repeated_failure", "length", "context"}
    for e in events:
        if e["type"] == "text":
            assert isinstance(e["text"], str)
        elif e["type"] == "tool_call":
            assert isinstance(e["name"], str) and isinstance(e["args"], dict)
        elif e["type"] == "tool_result":
            assert isinstance(e["ok"], bool) and isinstance(e["output"], str)
    # the conversation was saved as a session
    sessions = list((home / "sessions").glob("*.jsonl"))
    assert len(sessions) == 1
    saved = json.loads(sessions[0].read_text())
    assert saved["messages"][0] == {"role": "user", "content": "what is in this repository?"}


def test_no_model_says_so_and_prints_the_command(home, tmp_path):
    result = CliRunner().invoke(app, ["run", "-p", "hi", "--model", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no model there" in result.stderr and TRAIN_COMMAND in result.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "-p", "hi", "--allow", "Read,Fetch"], "unknown tool 'Fetch'"),
    (["run", "-p", "hi", "abc"], "without --resume; use --resume abc"),
    (["run", "-p", "hi", "--resume"], "no saved sessions"),
    (["run", "-p", "  "], "the prompt is empty"),
    (["chat", "--cwd", "/nonexistent/dir"], "is not a directory"),
])
def test_start_up_errors_are_clear(home, model_dir, args, message):
    result = CliRunner().invoke(app, args + ["--model", str(model_dir)])
    assert result.exit_code == 2 and message in result.stderr, result.output
