"""Token shards and the packing + FIM loader: round trips, no token lost or duplicated, FIM rows that
reassemble, determinism, resume and multi-process slicing."""
from collections import defaultdict

import numpy as np
import pytest

from nanocode.tokenizer import SPECIAL_TOKENS
from training.data.corpus import CorpusConfig, build_corpus, directory_sources, read_documents
from training.loader import Loader
from training.data.shards import (TokenShards, TokenizerMismatch, dtype_for, is_complete, read_meta, tokenize_corpus,
                             write_meta, write_split)

SPECIAL = {name.strip("<|>"): i for i, name in enumerate(SPECIAL_TOKENS)}


def synthetic_token_dir(path, lengths, vocab=1000, seed=0, shard_tokens=500):
    """Documents of the given lengths whose tokens are all >= len(SPECIAL_TOKENS) (never special)."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(len(SPECIAL_TOKENS), vocab, size=n) for n in lengths]
    path.mkdir(parents=True, exist_ok=True)
    train = write_split(path, "train", ((d, "code", 3 * len(d)) for d in docs), dtype_for(vocab), shard_tokens)
    val = write_split(path, "val", [], dtype_for(vocab))
    write_meta(path, "0" * 64, vocab, SPECIAL, {"train": train, "val": val})
    return docs


def test_shard_round_trip_and_dtype(tmp_path):
    docs = synthetic_token_dir(tmp_path / "t", [5, 0, 300, 1, 777, 40])
    shards = TokenShards(tmp_path / "t", "train")
    assert shards.n_docs == 6 and shards.n_tokens == sum(map(len, docs))
    assert len(read_meta(tmp_path / "t")["splits"]["train"]["shards"]) > 1  # a document never straddles shards
    for i, d in enumerate(docs):
        assert np.array_equal(shards.doc(i), d)
    assert shards.tokens[0].dtype == np.uint16 and dtype_for(65536) == "uint16" and dtype_for(65537) == "uint32"
    assert list(shards.n_bytes) == [3 * len(d) for d in docs]
    big = synthetic_token_dir(tmp_path / "big", [10, 20], vocab=70000)
    assert TokenShards(tmp_path / "big", "train").tokens[0].dtype == np.uint32
    assert np.array_equal(TokenShards(tmp_path / "big", "train").doc(1), big[1])


def test_tokenize_corpus_round_trips_text_and_checks_the_tokenizer(tmp_path, tiny_tokenizer):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("def parse_args(argv):\n    return argv[1:]\n" * 5)
    (src / "b.py").write_text("import os\nimport sys\n\nclass Foo:\n    pass\n" * 4)
    (src / "notes.md").write_text("where is parse_args defined? let me grep for it. Ünïcödé 🎉\n" * 3)
    corpus = tmp_path / "corpus"
    build_corpus(CorpusConfig(sources=tuple(directory_sources([src])), out=corpus, workers=1, val_fraction=0.0,
                              prose_val_fraction=0.0), progress=False)
    tiny_tokenizer.save(tmp_path / "tokenizer.json")
    meta = tokenize_corpus(corpus, tmp_path / "tokenizer.json", tmp_path / "tokens", progress=False)
    assert meta["dtype"] == "uint16" and meta["special"]["bos"] == tiny_tokenizer.special("bos")
    shards = TokenShards(tmp_path / "tokens", "train", tokenizer=tmp_path / "tokenizer.json")
    texts = [d for d in read_documents(corpus, "train", columns=("kind", "text"))]
    assert shards.n_docs == len(texts) == 3
    for i, doc in enumerate(texts):
        assert tiny_tokenizer.decode(shards.doc(i).tolist()) == doc["text"]
        assert shards.n_bytes[i] == len(doc["text"].encode()) and shards.kind[i] == ("code", "prose").index(doc["kind"])
    assert meta["splits"]["train"]["prose"]["n_docs"] == 1 and meta["splits"]["val"]["n_docs"] == 0
    other = tmp_path / "other.json"
    other.write_text((tmp_path / "tokenizer.json").read_text().replace('"<|bos|>"', '"<|bos|>" ', 1))
    assert is_complete(tmp_path / "tokens", tmp_path / "tokenizer.json", corpus)
    assert not is_complete(tmp_path / "tokens", other)
    with pytest.raises(TokenizerMismatch, match="different tokenizer"):
        TokenShards(tmp_path / "tokens", "train", tokenizer=other)
    with pytest.raises(ValueError, match="has no documents"):
        Loader(tmp_path / "tokens", 2, 16, split="val")


def test_packing_loses_and_duplicates_nothing(tmp_path):
    rng = np.random.default_rng(1)
    lengths = list(rng.integers(0, 90, size=60)) + [150, 400, 64, 63, 62]  # some longer than a row
    docs = synthetic_token_dir(tmp_path / "t", lengths)
    loader = Loader(tmp_path / "t", batch_size=4, seq_len=63, fim_rate=0.0, window=16, shuffle_rows=8)
    n_rows = 4 * 40
    covered = defaultdict(list)  # unit -> [(start, stop)]
    for step in range(n_rows // 4):
        tokens = loader.batch(step)
        assert tokens.shape == (4, 64) and tokens.dtype == np.int32
        assert (tokens[:, 0] == SPECIAL["bos"]).all()
        for b in range(4):
            pos = 0
            for unit, start, stop in loader.pieces(step * 4 + b):
                body = loader.unit_body(unit)
                assert tokens[b, pos] == SPECIAL["bos"]
                assert np.array_equal(tokens[b, pos + 1:pos + 1 + stop - start], body[start:stop])
                covered[unit].append((start, stop))
                pos += 1 + stop - start
            assert pos == 64
    pending = dict(loader.pending())
    for unit, spans in covered.items():
        spans.sort()
        end = 0
        for start, stop in spans:  # contiguous, no overlap: nothing duplicated, nothing skipped
            assert start == end
            end = stop
        info = loader.unit(unit)
        assert end == pending.get(unit, info["hi"] - info["lo"])  # finished, or the rest still waits
    # units cut every document that entered the window into consecutive row-sized chunks, end to end
    n_units = len(loader._unit_doc)
    for u in range(n_units):
        info = loader.unit(u)
        assert 0 <= info["hi"] - info["lo"] <= 63
        if info["lo"] > 0:
            before = loader.unit(u - 1)
            assert before["doc"] == info["doc"] and before["hi"] == info["lo"]
        if u + 1 == n_units or loader.unit(u + 1)["lo"] == 0:
            assert info["hi"] == len(docs[info["doc"]])
    assert loader.n_crops < n_rows // 2  # best fit: most rows end exactly, without a crop


def test_fim_rows_reassemble_into_the_document(tmp_path):
    docs = synthetic_token_dir(tmp_path / "t", [30, 45, 10, 200, 3, 0, 57])
    loader = Loader(tmp_path / "t", batch_size=2, seq_len=63, fim_rate=1.0)
    prefix, suffix, middle, end = (SPECIAL[k] for k in ("fim_prefix", "fim_suffix", "fim_middle", "fim_end"))
    checked = 0
    for row in range(20):
        tokens = loader.batch(row // 2)[row % 2]
        pos = 0
        for unit, start, stop in loader.pieces(row):
            piece = tokens[pos + 1:pos + 1 + stop - start]
            info = loader.unit(unit)
            if start == 0 and stop == len(loader.unit_body(unit)):  # the whole FIM example is in this row
                assert piece[0] == prefix and piece[-1] == end
                i, j = list(piece).index(suffix), list(piece).index(middle)
                p, s, m = piece[1:i], piece[i + 1:j], piece[j + 1:-1]
                assert np.array_equal(np.concatenate([p, m, s]), docs[info["doc"]][info["lo"]:info["hi"]])
                assert (len(p), len(p) + len(m)) == (info["fim"][0] - info["lo"], info["fim"][1] - info["lo"])
                checked += 1
            pos += 1 + stop - start
    assert checked >= 10
    plain = Loader(tmp_path / "t", batch_size=2, seq_len=63, fim_rate=0.0).batch(0)
    assert not np.isin(plain, [prefix, suffix, middle, end]).any()


def test_fim_rate_is_a_fraction_of_documents(tmp_path):
    synthetic_token_dir(tmp_path / "t", [20] * 400)
    loader = Loader(tmp_path / "t", batch_size=8, seq_len=127, fim_rate=0.3)
    loader.batch(10)
    n_units = len(loader._unit_doc)
    fim = sum(loader.unit(u)["fim"] is not None for u in range(n_units))
    assert 0.2 < fim / n_units < 0.4


def test_batches_are_a_pure_function_of_seed_step_and_process(tmp_path):
    synthetic_token_dir(tmp_path / "t", list(np.random.default_rng(2).integers(1, 200, size=80)))
    make = lambda **kw: Loader(tmp_path / "t", **{"batch_size": 4, "seq_len": 31, "fim_rate": 0.5, **kw})
    walked = make()
    history = [walked.batch(s) for s in range(12)]
    resumed = make()  # a restarted run asks for step 9 first
    assert np.array_equal(resumed.batch(9), history[9]) and np.array_equal(resumed.batch(3), history[3])
    assert not np.array_equal(make(seed=1).batch(9), history[9])
    # two processes with batch 2 see exactly the rows one process with batch 4 sees, split in halves
    p0, p1 = make(batch_size=2, process_count=2, process_index=0), make(batch_size=2, process_count=2, process_index=1)
    for s in (0, 5, 11):
        assert np.array_equal(np.concatenate([p0.batch(s), p1.batch(s)]), history[s])
    tokens, segments = walked.batch_with_segments(4)
    assert np.array_equal(tokens, history[4])
    assert (segments[:, 0] == 0).all() and (np.diff(segments, axis=1) >= 0).all()
    assert ((tokens == SPECIAL["bos"]) == np.concatenate([np.ones((4, 1), bool), np.diff(segments, axis=1) == 1],
                                                         axis=1)).all()
    # the shuffle serves a block's packed rows in another order, none lost or repeated
    in_order = np.concatenate([make(shuffle_rows=1).batch(s) for s in range(4)])
    shuffled = np.concatenate([make(shuffle_rows=16).batch(s) for s in range(4)])
    assert sorted(r.tobytes() for r in in_order) == sorted(r.tobytes() for r in shuffled)
    assert not np.array_equal(in_order, shuffled)
    with pytest.raises(ValueError, match="process_index"):
        make(process_index=2, process_count=2)


def test_cli_stages_end_to_end(tmp_path, monkeypatch):
    """`data corpus` -> `train tokenizer` -> `data shards` under $NANOCODE_HOME, then real batches."""
    from typer.testing import CliRunner

    from nanocode.cli import app
    from nanocode.tokenizer import Tokenizer

    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path / "home"))
    src = tmp_path / "project"
    src.mkdir()
    for i in range(12):
        (src / f"mod_{i}.py").write_text("".join(f"def f_{i}_{j}(x):\n    return x * {j} + {i}\n\n\n" for j in range(20)))
    (src / "README.md").write_text("This project multiplies numbers and adds other numbers to them.\n" * 5)
    runner = CliRunner()
    for args in (["data", "corpus", "--only-src", "--src", str(src), "--workers", "1", "--val-fraction", "0.2"],
                 ["train", "tokenizer", "--vocab", "300", "--no-baseline"], ["data", "shards"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    home = tmp_path / "home"
    tok = Tokenizer.load(home / "tokenizer")
    loader = Loader(home / "data" / "tokens", 2, 64, fim_rate=0.0, tokenizer=home / "tokenizer")
    corpus_text = "".join(d["text"] for d in read_documents(home / "data" / "corpus", "train", ("text",)))
    row = loader.batch(0)[0]
    for piece in tok.decode(row.tolist()).split("<|bos|>")[1:]:
        assert piece in corpus_text
