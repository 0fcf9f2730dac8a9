import pytest
from hypothesis import given, settings, strategies as st

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_roundtrip_arbitrary_unicode(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text)
    assert tiny_tokenizer.decode(ids) == text
    assert not set(ids) & tiny_tokenizer.special_ids


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(SPECIAL_TOKENS + ("<|", "|>", "bos", "x", " ", "\n")), max_size=12))
def test_special_token_text_never_becomes_special(tiny_tokenizer, pieces):
    text = "".join(pieces)
    ids = tiny_tokenizer.encode(text)
    assert not set(ids) & tiny_tokenizer.special_ids
    assert tiny_tokenizer.decode(ids) == text


def test_special_lookup(tiny_tokenizer):
    assert tiny_tokenizer.special("bos") == tiny_tokenizer.special("<|bos|>")
    assert len({tiny_tokenizer.special(t) for t in SPECIAL_TOKENS}) == len(SPECIAL_TOKENS)
    with pytest.raises(TokenizerError, match="unknown special token"):
        tiny_tokenizer.special("nope")


def test_byte_lengths_sum_to_utf8_length(tiny_tokenizer):
    text = "def f(x):\n    return 'é🎉'\n"
    ids = [tiny_tokenizer.special("bos")] + tiny_tokenizer.encode(text)
    assert int(tiny_tokenizer.token_byte_lengths[ids].sum()) == len(text.encode("utf-8"))
    assert all(tiny_tokenizer.token_byte_lengths[tiny_tokenizer.special(t)] == 0 for t in SPECIAL_TOKENS)


def test_save_load_and_errors(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path)
    assert again.encode("import os") == tiny_tokenizer.encode("import os")
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a valid tokenizer.json"):
        Tokenizer.load(tmp_path / "bad.json")
