"""`nanocode data shards`: the corpus tokenized into flat token shards with document boundaries.

Format of a token directory (what the loader and the bits-per-byte evaluation read):
    meta.json                   written last (its presence marks the stage complete):
        format, tokenizer_sha256 (of the tokenizer.json bytes), vocab_size, dtype (`uint16` when the
        vocabulary fits, else `uint32`), special ({name: id} for every special token), corpus and
        corpus_stats_sha256 (which corpus build the shards come from), and
        splits: {split: {n_docs, n_tokens, n_bytes, code: {n_docs, n_tokens, n_bytes}, prose: {...},
                          shards: [{tokens, docs, n_docs, n_tokens}]}}
    {split}_{i:05d}.tokens.npy  the documents' tokens back to back, no separators (`np.load(mmap_mode="r")`)
    {split}_{i:05d}.docs.npz    offsets int64[D+1] (document d is tokens[offsets[d]:offsets[d+1]]),
                                kind uint8[D] (0 code, 1 prose), n_bytes int64[D] (UTF-8 bytes of the text)
Documents are stored without `<|bos|>`: the loader adds it (and the FIM tokens) when it packs rows. For
bits per byte, sum a document's token losses and divide by its n_bytes (code and prose separately).

Tokenization runs in HF tokenizers' Rust thread pool (`encode_batch_fast` uses every core): no process
start-up, no pickled tokenizer (140 MB of corpus took 58 s of CPU at a 32k vocabulary, 2026-11-22).
"""
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer
from training import common, outdir
from training.data import corpus_io


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode data shards", description="Tokenize the corpus into flat token "
                                "shards for pretraining.")
    p.add_argument("--corpus", type=Path, help="Corpus directory (default: $NANOCODE_HOME/data/corpus).")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json or its directory (default: "
                   "$NANOCODE_HOME/tokenizer).")
    p.add_argument("--out", type=Path, help="Output directory (default: $NANOCODE_HOME/data/tokens).")
    return p


META = "meta.json"
FORMAT = "nanocode-tokens-v1"
KINDS = ("code", "prose")
SHARDS = ("*.tokens.npy", "*.docs.npz")
WRITES = (META, *SHARDS, corpus_io.PARTIAL)  # what this stage writes into --out (meta.json, its record, first)


class TokenizerMismatch(ValueError):
    pass


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tokenizer_file(path: Path) -> Path:
    path = Path(path)
    return path / "tokenizer.json" if path.is_dir() else path


def read_meta(token_dir: Path, tokenizer: Path | None = None) -> dict:
    """meta.json of a complete token directory; with `tokenizer`, also checks the shards were made by it."""
    path = Path(token_dir) / META
    if not path.is_file():
        raise FileNotFoundError(f"no token shards in {token_dir} (missing {META}): run `nanocode data shards`")
    meta = json.loads(path.read_text())
    if tokenizer is not None and meta["tokenizer_sha256"] != file_sha256(tokenizer_file(tokenizer)):
        raise TokenizerMismatch(f"the shards in {token_dir} were made with a different tokenizer than "
                                f"{tokenizer_file(tokenizer)}; rebuild them with `nanocode data shards`")
    return meta


def is_complete(token_dir: Path, tokenizer: Path | None = None, corpus: Path | None = None) -> bool:
    """Shards exist (made by `tokenizer`, from this build of `corpus`, when those are given)."""
    try:
        meta = read_meta(token_dir, tokenizer)
    except (FileNotFoundError, TokenizerMismatch, json.JSONDecodeError, KeyError):
        return False
    return corpus is None or meta.get("corpus_stats_sha256") == file_sha256(Path(corpus) / corpus_io.STATS)


def write_split(out: Path, split: str, docs: Iterable[tuple[np.ndarray, str, int]], dtype: str,
                shard_tokens: int = 1 << 28) -> dict:
    """Writes documents ((tokens, kind, n_bytes) in order) as shards of about `shard_tokens` tokens;
    a document never straddles two shards. Returns the split's entry for meta.json."""
    entry = {"n_docs": 0, "n_tokens": 0, "n_bytes": 0, "shards": [],
             **{k: {"n_docs": 0, "n_tokens": 0, "n_bytes": 0} for k in KINDS}}
    pieces, kinds, n_bytes = [], [], []

    def flush():
        if not pieces:
            return
        name = f"{split}_{len(entry['shards']):05d}"
        lengths = np.array([len(p) for p in pieces], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        np.save(out / f"{name}.tokens.npy", np.concatenate(pieces).astype(dtype, copy=False))
        np.savez(out / f"{name}.docs.npz", offsets=offsets, kind=np.array(kinds, np.uint8),
                 n_bytes=np.array(n_bytes, np.int64))
        entry["shards"].append({"tokens": f"{name}.tokens.npy", "docs": f"{name}.docs.npz",
                                "n_docs": len(pieces), "n_tokens": int(offsets[-1])})
        pieces.clear(), kinds.clear(), n_bytes.clear()

    buffered = 0
    for tokens, kind, size in docs:
        pieces.append(np.asarray(tokens, dtype=dtype))
        kinds.append(KINDS.index(kind))
        n_bytes.append(size)
        for slot in (entry, entry[kind]):
            slot["n_docs"] += 1
            slot["n_tokens"] += len(tokens)
            slot["n_bytes"] += size
        buffered += len(tokens)
        if buffered >= shard_tokens:
            flush()
            buffered = 0
    flush()
    return entry


def write_meta(out: Path, tokenizer_sha256: str, vocab_size: int, special: dict[str, int], splits: dict,
               corpus: Path | None = None) -> None:
    meta = {"format": FORMAT, "tokenizer_sha256": tokenizer_sha256, "vocab_size": vocab_size,
            "dtype": dtype_for(vocab_size), "special": special, "splits": splits,
            "corpus": str(corpus) if corpus else "",
            "corpus_stats_sha256": file_sha256(Path(corpus) / corpus_io.STATS) if corpus else ""}
    (out / META).write_text(json.dumps(meta, indent=2))


def dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def tokenize_corpus(corpus: Path, tokenizer: Path, out: Path, shard_tokens: int = 1 << 28,
                    batch_bytes: int = 16 << 20, progress: bool = True) -> dict:
    """Tokenizes both splits of a corpus into `out` (its old shards replaced, meta.json last). Returns
    meta.json's content."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    corpus, out, tokenizer = Path(corpus), Path(out), tokenizer_file(tokenizer)
    tok = Tokenizer.load(tokenizer)
    stats = json.loads((corpus / corpus_io.STATS).read_text()) if corpus_io.is_complete(corpus) else None
    if stats is None:
        raise FileNotFoundError(f"no complete corpus in {corpus}: run `nanocode data corpus` first")
    dtype = dtype_for(tok.vocab_size)
    outdir.claim(out, "data shards", WRITES)
    partial = corpus_io.new_partial(out)

    total = sum(s["code_bytes"] + s["prose_bytes"] for s in stats["splits"].values())
    with Progress(TextColumn("tokenize"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} MB"),
                  TimeRemainingColumn(), console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("bytes", total=total / 1e6)

        def encoded(split: str):
            batch, size = [], 0
            for doc in corpus_io.read_documents(corpus, split, columns=("kind", "text")):
                batch.append(doc)
                size += len(doc["text"])
                if size >= batch_bytes:
                    yield from _encode(tok, batch)
                    bar.advance(task, size / 1e6)
                    batch, size = [], 0
            yield from _encode(tok, batch)
            bar.advance(task, size / 1e6)

        splits = {split: write_split(partial, split, encoded(split), dtype, shard_tokens) for split in ("train", "val")}
    special = {name.strip("<|>"): tok.special(name) for name in SPECIAL_TOKENS}
    write_meta(partial, file_sha256(tokenizer), tok.vocab_size, special, splits, corpus)
    corpus_io.replace_files(partial, out, META, SHARDS)
    return read_meta(out)


def _encode(tok: Tokenizer, batch: list[dict]):
    # encode_batch_fast skips character offsets (~20% faster). Calling the HF object directly keeps
    # special-token matching off: the wrapper switched that off on the object itself.
    encodings = tok.hf.encode_batch_fast([d["text"] for d in batch], add_special_tokens=False)
    for doc, encoding in zip(batch, encodings):
        yield encoding.ids, doc["kind"], len(doc["text"].encode("utf-8"))


class TokenShards:
    """One split of a token directory, memory-mapped: `doc(i)` is document i's tokens (no copy)."""

    def __init__(self, token_dir: Path, split: str, tokenizer: Path | None = None):
        self.meta = read_meta(token_dir, tokenizer)
        if split not in self.meta["splits"]:
            raise ValueError(f"unknown split {split!r}; {token_dir} has {sorted(self.meta['splits'])}")
        shards = self.meta["splits"][split]["shards"]
        self.tokens = [np.load(Path(token_dir) / s["tokens"], mmap_mode="r") for s in shards]
        docs = [np.load(Path(token_dir) / s["docs"]) for s in shards]
        self.doc_shard = np.concatenate([np.full(len(d["kind"]), i, np.int32) for i, d in enumerate(docs)] or [np.zeros(0, np.int32)])
        self.doc_start = np.concatenate([d["offsets"][:-1] for d in docs] or [np.zeros(0, np.int64)])
        self.doc_len = np.concatenate([np.diff(d["offsets"]) for d in docs] or [np.zeros(0, np.int64)])
        self.kind = np.concatenate([d["kind"] for d in docs] or [np.zeros(0, np.uint8)])
        self.n_bytes = np.concatenate([d["n_bytes"] for d in docs] or [np.zeros(0, np.int64)])
        self.n_docs, self.n_tokens = len(self.doc_len), int(self.doc_len.sum())

    def doc(self, i: int) -> np.ndarray:
        start = self.doc_start[i]
        return self.tokens[self.doc_shard[i]][start:start + self.doc_len[i]]


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    from nanocode.lookup import nanocode_home
    from nanocode.tokenizer import TokenizerError
    home = nanocode_home()
    out = a.out or home / "data" / "tokens"
    try:
        meta = tokenize_corpus(a.corpus or home / "data" / "corpus", a.tokenizer or home / "tokenizer", out)
    except TokenizerError as e:
        return common.fail(f"{e} (train one with `nanocode train tokenizer`, or pass --tokenizer)")
    except (FileNotFoundError, common.StageError) as e:
        return common.fail(e)
    for split, entry in meta["splits"].items():
        print(f"{split}: {entry['n_docs']:,} documents, {entry['n_tokens']:,} tokens "
              f"({entry['n_bytes'] / max(1, entry['n_tokens']):.2f} bytes/token)")
    print(f"token shards ({meta['dtype']}) written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
