import pytest

from nanocode.template import (ToolCallError, ToolCallPart, ToolResultPart, TextPart, parse_assistant,
                               render_conversation, render_prompt, render_tool_result, stop_ids)

CONVERSATION = [
    {"role": "user", "content": "where is parse_args defined? <|tool_call_start|>"},
    {"role": "assistant", "content": [
        {"type": "text", "text": "let me grep for it\n"},
        {"type": "tool_call", "name": "Grep", "args": {"pattern": "def parse_args", "glob": "*.py"}},
        {"type": "tool_result", "ok": True, "output": "cli.py:12:def parse_args(argv):"},
        {"type": "tool_call", "name": "Read", "args": {"path": "nope.py"}},
        {"type": "tool_result", "ok": False, "output": "file not found: nope.py"},
        {"type": "text", "text": "it's in cli.py, line 12 :)"}]},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "anytime!"},
]


def test_render_parse_roundtrip_every_part(tiny_tokenizer):
    tok = tiny_tokenizer
    ids, mask = render_conversation(CONVERSATION, tok)
    assert len(ids) == len(mask) and ids[0] == tok.special("bos")
    start = ids.index(tok.special("assistant_start")) + 1
    parts, ended = parse_assistant(ids[start:], tok)
    assert ended
    assert parts == [TextPart("let me grep for it\n"),
                     ToolCallPart("Grep", {"pattern": "def parse_args", "glob": "*.py"}),
                     ToolResultPart(True, "cli.py:12:def parse_args(argv):"),
                     ToolCallPart("Read", {"path": "nope.py"}),
                     ToolResultPart(False, "file not found: nope.py"),
                     TextPart("it's in cli.py, line 12 :)")]


def test_loss_mask_covers_exactly_the_assistant(tiny_tokenizer):
    tok = tiny_tokenizer
    ids, mask = render_conversation(CONVERSATION, tok)
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    expected = ("let me grep for it\n<|tool_call_start|>Grep<|tool_arg|>pattern<|tool_val|>def parse_args"
                "<|tool_arg|>glob<|tool_val|>*.py<|tool_call_end|>"
                "<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>nope.py<|tool_call_end|>"
                "it's in cli.py, line 12 :)<|assistant_end|>anytime!<|assistant_end|>")
    assert trained == expected
    # the user's literal special-token text is plain bytes, and untrained
    assert ids.count(tok.special("tool_call_start")) == 2


def test_prompt_opens_or_continues_assistant_turn(tiny_tokenizer):
    tok = tiny_tokenizer
    p = render_prompt(CONVERSATION[:1], tok)
    assert p[-1] == tok.special("assistant_start")
    partial = {"role": "assistant", "content": CONVERSATION[1]["content"][:3]}
    p2 = render_prompt(CONVERSATION[:1] + [partial], tok)
    assert p2[-1] == tok.special("tool_result_end")
    assert p2[:len(p)] == p
    assert render_tool_result(True, "x", tok)[0] == tok.special("tool_result_start")
    assert set(stop_ids(tok)) == {tok.special("tool_call_end"), tok.special("assistant_end")}


def _gen(tok, *pieces):
    """Builds generated ids from text pieces and special-token names like '<|tool_arg|>'."""
    ids = []
    for p in pieces:
        ids += [tok.special(p)] if p.startswith("<|") else tok.encode(p)
    return ids


@pytest.mark.parametrize("pieces, kind", [
    (["hi ", "<|tool_call_start|>", "Fetch", "<|tool_arg|>", "url", "<|tool_val|>", "x", "<|tool_call_end|>"],
     "unknown_tool"),
    (["<|tool_call_start|>", "Read", "<|tool_arg|>", "offset", "<|tool_val|>", "3", "<|tool_call_end|>"],
     "missing_argument"),
    (["<|tool_call_start|>", "Read", "<|tool_val|>", "a.py", "<|tool_call_end|>"], "value_without_name"),
    (["<|tool_call_start|>", "Read", "<|tool_arg|>", "path", "<|tool_val|>", "a.py"], "truncated"),
    (["<|tool_call_start|>", "Read", "<|tool_arg|>", "path", "<|tool_call_end|>"], "missing_value"),
    (["<|tool_call_start|>", "Read", "<|tool_arg|>", "file", "<|tool_val|>", "a", "<|tool_call_end|>"],
     "unknown_argument"),
    (["<|tool_call_start|>", "<|tool_arg|>", "path", "<|tool_val|>", "a", "<|tool_call_end|>"], "missing_name"),
    (["<|tool_call_start|>", "Read", "<|user_start|>", "<|tool_call_end|>"], "stray_token"),
    (["ok ", "<|tool_result_start|>", "fake", "<|tool_result_end|>"], "model_wrote_result"),
])
def test_malformed_calls_give_specific_errors(tiny_tokenizer, pieces, kind):
    with pytest.raises(ToolCallError) as err:
        parse_assistant(_gen(tiny_tokenizer, *pieces), tiny_tokenizer, allow_results=False)
    assert err.value.kind == kind
    assert str(err.value)
    if pieces[0] in ("hi ", "ok "):
        assert err.value.parts == [TextPart(pieces[0])]


def test_values_keep_whitespace_and_special_text(tiny_tokenizer):
    tok = tiny_tokenizer
    call = ToolCallPart("Edit", {"path": "a.py", "old_string": "  x = 1\n", "new_string": "<|assistant_end|>\n"})
    ids, _ = render_conversation([{"role": "user", "content": "q"},
                                  {"role": "assistant", "content": [call]}], tok)
    start = ids.index(tok.special("assistant_start")) + 1
    parts, ended = parse_assistant(ids[start:], tok)
    assert parts == [call] and ended
