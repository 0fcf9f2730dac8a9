"""The tokenizer eval: bytes per token on validation code and prose, from a real corpus directory."""
import pytest
from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer
from training.eval.tokenizer import evaluate, measure, summary_table


def bytes_only_tokenizer() -> Tokenizer:
    """A byte-level BPE with no merges: every byte is one token, so bytes/token is exactly 1."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256 + len(SPECIAL_TOKENS), special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(["x"], trainer=trainer)
    return Tokenizer(hf)


CODE = ["def parse_args(argv):\n    return argv[1:]\n", "for i in range(10):\n    print(i * 2)\n"]
PROSE = ["where is parse_args defined? Ünïcödé, 日本語"]


def test_bytes_per_token_by_hand():
    tok = bytes_only_tokenizer()
    code_bytes = sum(len(t.encode()) for t in CODE)
    assert measure(tok, CODE) == {"docs": 2, "bytes": code_bytes, "tokens": code_bytes, "bytes_per_token": 1.0}
    prose = measure(tok, PROSE)
    assert prose["bytes"] == len(PROSE[0]) + 4 * 1 + 3 * 2 == prose["tokens"]  # Ü ï ö é: 2 bytes, 日本語: 3 each
    assert measure(tok, []) == {"docs": 0, "bytes": 0, "tokens": 0, "bytes_per_token": None}


def test_a_trained_tokenizer_compresses(tiny_tokenizer):
    result = measure(tiny_tokenizer, CODE)
    assert result["tokens"] == sum(len(tiny_tokenizer.encode(t)) for t in CODE)
    assert result["bytes_per_token"] > 2.0  # the tiny tokenizer was trained on this code


def test_evaluate_reads_the_validation_split_of_a_real_corpus(tmp_path, tiny_tokenizer):
    from training.data.corpus import CorpusConfig, build_corpus, directory_sources

    src = tmp_path / "proj"
    src.mkdir()
    (src / "util.py").write_text("def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n    return a + b\n\n\n"
                                 "def sub(a, b):\n    return a - b\n" * 3)
    (src / "README.md").write_text("# proj\n\nA small project that adds and subtracts numbers, "
                                   "with a readme long enough to keep.\n" * 3)
    corpus = tmp_path / "corpus"
    stats = build_corpus(CorpusConfig(sources=tuple(directory_sources([src])), out=corpus, val_fraction=1.0,
                                      workers=1), progress=False)
    result = evaluate(tiny_tokenizer, corpus)
    val = stats["splits"]["val"]
    assert result["split"] == "val" and result["all"]["docs"] == val["docs"] >= 1
    # the byte counts agree with the corpus's own statistics of its validation split
    assert result["by_kind"]["code"]["bytes"] == val["code_bytes"]
    assert result["by_kind"]["prose"]["bytes"] == val["prose_bytes"]
    assert result["all"]["tokens"] > 0
    table = summary_table(result)
    assert [row[0] for row in table.rows] == ["code", "prose", "all"]
    with pytest.raises(FileNotFoundError, match="nanocode data corpus"):
        evaluate(tiny_tokenizer, tmp_path / "nothing-here")
