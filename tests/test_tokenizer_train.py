"""Tokenizer training: special tokens, the code pre-tokenizer, the compression report, the saved file."""
import json
import sysconfig
from pathlib import Path

import pytest

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer
from training.data.corpus import CorpusConfig, build_corpus, directory_sources
from training.data.tokenizer_train import (CODE_PATTERN, MIN_VOCAB, is_complete, new_tokenizer, train_bpe,
                                      train_tokenizer)

CODE = [
    "def parse_args(argv):\n    if not argv:\n        return []\n    return argv[1:]\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(100):\n    if i % 7 == 0:\n        print(i, 12345)\n",
] * 30


def pieces(text: str) -> list[str]:
    return [p for p, _ in new_tokenizer(CODE_PATTERN).pre_tokenizer.pre_tokenize_str(text)]


def test_code_pre_tokenizer_keeps_line_breaks_with_indentation_and_splits_digits():
    got = pieces("if x:\n        y = 12345\n\n    return y\n")
    # ByteLevel shows a space as Ġ and a newline as Ċ
    assert ":ĊĠĠĠĠĠĠĠĠ" in got and "ĊĊĠĠĠĠ" in got
    assert [p for p in got if p.strip("Ġ").isdigit()] == ["12", "34", "5"]


def test_train_bpe_special_tokens_and_roundtrip():
    tok = train_bpe(CODE, 400)
    assert MIN_VOCAB < tok.vocab_size <= 400  # merges stop early when a tiny corpus runs out of pairs
    assert [tok.special(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    text = "def f(x):\n    return '<|bos|> é 🎉'\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and not set(ids) & tok.special_ids
    # indentation after a line break became whole tokens
    assert any(tok.decode([i]).startswith(":\n    ") for i in tok.encode(CODE[0]))


def test_vocab_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        train_bpe(CODE, MIN_VOCAB - 1)


def test_train_tokenizer_stage_wins_on_code(tmp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = tmp_path / "corpus"
    build_corpus(CorpusConfig(sources=tuple(directory_sources([stdlib / "json", stdlib / "email"])), out=corpus,
                              workers=1, val_fraction=0.2, prose_val_fraction=0.5), progress=False)
    out = tmp_path / "tok"
    report = train_tokenizer(corpus, out, vocab_size=1024)
    assert is_complete(out) and is_complete(out, corpus)
    build_corpus(CorpusConfig(sources=tuple(directory_sources([stdlib / "json"])), out=corpus, workers=1),
                 progress=False)
    assert not is_complete(out, corpus)  # the corpus was rebuilt since: the tokenizer is stale
    saved = Tokenizer.load(out)
    assert saved.vocab_size == 1024 and saved.special("fim_middle") == SPECIAL_TOKENS.index("<|fim_middle|>")
    assert json.loads((out / "compression.json").read_text()) == report
    code = report["val"]["code"]
    assert code["docs"] > 0 and code["nanocode"] > code["gpt4_split"]
    assert report["code_tokenizer_wins_on_code"] is True
