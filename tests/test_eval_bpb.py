"""`nanocode eval bpb` on a real (tiny) corpus, shards and saved model, against a value computed by hand."""
import json
import math

import jax.numpy as jnp
import pytest
from flax import nnx

from nanocode.checkpoint import load_model, save_model
from nanocode.model import GPT, ModelConfig
from training.eval import bpb as eval_bpb
from training.data.corpus import CorpusConfig, build_corpus, directory_sources, read_documents
from training.data.shards import tokenize_corpus


@pytest.fixture(scope="module")
def bpb_run(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("bpb")
    src = root / "proj"
    src.mkdir()
    (src / "util.py").write_text("def parse_args(argv):\n    \"\"\"The arguments after the program name.\"\"\"\n"
                                 "    return argv[1:]\n\n\nfor i in range(10):\n    print(i * 2)\n" * 2)
    (src / "NOTES.md").write_text("# notes\n\nwhere is parse_args defined? let me grep for it. it's in cli.py, "
                                  "line 12, and the tests cover it well enough for now.\n" * 2)
    corpus = root / "corpus"
    build_corpus(CorpusConfig(sources=tuple(directory_sources([src])), out=corpus, val_fraction=1.0, workers=1),
                 progress=False)
    tiny_tokenizer.save(root / "tokenizer.json")
    tokens = root / "tokens"
    tokenize_corpus(corpus, root / "tokenizer.json", tokens, progress=False)
    # A model whose head is zero predicts every token with probability 1/V: its bits per byte is known.
    model = GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=64), rngs=nnx.Rngs(0))
    model.lm_head[...] = jnp.zeros_like(model.lm_head[...])
    model_dir = save_model(root / "run" / "model", model, tiny_tokenizer, meta={"stage": "base"})
    return corpus, tokens, model_dir


def test_bits_per_byte_of_a_uniform_model_matches_the_hand_computation(bpb_run, tiny_tokenizer):
    corpus, tokens, model_dir = bpb_run
    model, tok, _ = load_model(model_dir)
    result = eval_bpb.evaluate(model, tok, model_dir, tokens, batch_rows=4)
    docs = list(read_documents(corpus, "val"))
    assert {d["kind"] for d in docs} == set(result["bpb"])
    for kind in result["bpb"]:
        texts = [d["text"] for d in docs if d["kind"] == kind]
        n_tokens = sum(len(tiny_tokenizer.encode(t)) for t in texts)  # <|bos|> targets count no bytes, no loss
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        by_hand = n_tokens * math.log2(tiny_tokenizer.vocab_size) / n_bytes
        assert result["bpb"][kind] == pytest.approx(by_hand, rel=1e-5)
    assert result["seq_len"] == 64 and result["data"] == str(tokens)


def test_the_shards_must_come_from_the_models_tokenizer(bpb_run, tmp_path):
    from tests.conftest import train_tiny_tokenizer

    corpus, tokens, model_dir = bpb_run
    other = train_tiny_tokenizer(vocab_size=400)
    model = GPT(ModelConfig(depth=1, vocab_size=other.vocab_size, seq_len=64), rngs=nnx.Rngs(0))
    other_dir = save_model(tmp_path / "other", model, other)
    with pytest.raises(ValueError, match="another tokenizer"):
        eval_bpb.evaluate(model, other, other_dir, tokens)
    with pytest.raises(FileNotFoundError, match="nanocode data shards"):
        eval_bpb.evaluate(model, other, other_dir, tmp_path / "no-shards")


def test_the_default_shards_are_those_the_run_trained_on(bpb_run, tmp_path, monkeypatch):
    _, tokens, model_dir = bpb_run
    (model_dir.parent / "log.jsonl").write_text(json.dumps({"event": "start", "step": 0, "data": str(tokens)}) + "\n")
    assert eval_bpb.default_token_dir(model_dir) == tokens
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path))
    assert eval_bpb.default_token_dir(tmp_path / "elsewhere" / "model") == tmp_path / "data" / "tokens"
