"""The model in checkpoints/ is what `nanocode chat` loads right after install: it must load and answer
a fixed request with a well-formed assistant turn (prose, then a tool call in the protocol's syntax)."""
from nanocode import lookup
from nanocode.checkpoint import load_model
from nanocode.sampler import Sampler
from nanocode.template import ToolCallPart, parse_assistant, render_prompt, stop_ids


def test_chat_finds_the_shipped_model_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path))
    monkeypatch.delenv("NANOCODE_MODEL", raising=False)
    assert lookup.find_model().parent == lookup.shipped_dir()


def test_shipped_model_answers_with_a_well_formed_turn(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path))
    monkeypatch.delenv("NANOCODE_MODEL", raising=False)
    model, tok, info = load_model(lookup.find_model())
    prompt = render_prompt([{"role": "user", "content": "where is the function parse_args defined?"}], tok)
    out = Sampler(model).generate(prompt, 96, stop=stop_ids(tok))
    parts, _ = parse_assistant(out, tok, allow_results=False)  # raises ToolCallError if malformed
    assert parts and isinstance(parts[-1], ToolCallPart), tok.decode(out)
    assert out[-1] == tok.special("tool_call_end")
