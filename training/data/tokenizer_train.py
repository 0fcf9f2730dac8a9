"""`nanocode train tokenizer`: a byte-level BPE (HF `tokenizers`) made for code, with the special tokens
of DESIGN.md, trained on a byte budget of the corpus's train split.

The pre-tokenizer decides what BPE may merge. GPT-4's split pattern (the baseline) puts a line's last
punctuation and its newline in one piece, then the next line's indentation in another, then ` def`.
Ours puts end-of-line punctuation, the line break(s) and the whole next indentation in ONE piece, so
BPE learns tokens such as `:\n        ` and a code line boundary usually costs one token instead of
two; words are GPT-4's, and digits split in ones or twos (nanochat). On validation code that is 3.668
bytes per token against GPT-4's split's 3.457 (vocab 8192; the variants tried are in training/LOG.md).
`compression.json` reports bytes per token on validation code and prose for both tokenizers, trained on
the same texts at the same vocabulary size; the code tokenizer must win on code.

Outputs in the tokenizer directory: `tokenizer.json` (standard HF format; `nanocode.tokenizer.Tokenizer`
loads it) and `compression.json`, written last: its presence marks the stage complete.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer
from training import common, outdir
from training.data import corpus_io


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode train tokenizer", description="Train the byte-level BPE code "
                                "tokenizer and report its compression.")
    p.add_argument("--vocab", type=int, default=32768, help="Vocabulary size, special tokens included (a few "
                   "hundred for tests, up to 65536). Default: %(default)s.")
    p.add_argument("--corpus", type=Path, help="Corpus directory (default: $NANOCODE_HOME/data/corpus).")
    p.add_argument("--out", type=Path, help="Output directory (default: $NANOCODE_HOME/tokenizer).")
    p.add_argument("--max-bytes", type=common.size, default="1G", help="Train on at most this much text (a "
                   "reproducible sample), e.g. 200M. Default: 1G.")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True, help="Also train a "
                   "GPT-4-split tokenizer to compare compression with. Default: on.")
    return p


CODE_PATTERN = (
    r" ?[^\s\p{L}\p{N}]*(?:[ \t]*\r?\n)+[ \t]*"  # end-of-line symbols + line break(s) + next indentation
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"              # a word, with one leading space or symbol
    r"|\p{N}{1,2}"                              # digits in ones or twos
    r"| ?[^\s\p{L}\p{N}]+"                     # a run of operators / punctuation
    r"|[ \t]+(?!\S)|\s+"                        # other whitespace
)
GPT4_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # every byte, every special token; merges come on top
COMPRESSION = "compression.json"
WRITES = (COMPRESSION, "tokenizer.json", ".tokenizer.json.*", f".{COMPRESSION}.*")  # into --out; the record first


def new_tokenizer(pattern: str) -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    return hf


def check_vocab(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"--vocab {vocab_size} is too small: a byte-level BPE with {len(SPECIAL_TOKENS)} special "
                         f"tokens needs at least {MIN_VOCAB}; use e.g. 512 for tests, 8192+ for real models")


def train_bpe(texts: Iterable[str], vocab_size: int, pattern: str = CODE_PATTERN) -> Tokenizer:
    check_vocab(vocab_size)
    hf = new_tokenizer(pattern)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(hf)


def sample_texts(corpus: Path, split: str, max_bytes: int, kind: str | None = None) -> list[str]:
    """Documents of a split up to `max_bytes` of UTF-8, a deterministic random sample when the split is
    larger (a hash of path and position decides), so a budget never means "the alphabetically first"."""
    docs = [d for d in corpus_io.read_documents(corpus, split) if kind is None or d["kind"] == kind]
    total = sum(len(d["text"].encode("utf-8")) for d in docs)
    keep = min(1.0, max_bytes / max(1, total))
    texts, used = [], 0
    for i, d in enumerate(docs):
        digest = hashlib.blake2b(f"{d['path']}#{i}".encode(), digest_size=8).digest()
        if int.from_bytes(digest, "big") < keep * 2**64 and used < max_bytes:
            texts.append(d["text"])
            used += len(d["text"].encode("utf-8"))
    return texts


def bytes_per_token(tokenizer: Tokenizer, texts: list[str]) -> float:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in tokenizer.encode_batch(texts))
    return n_bytes / max(1, n_tokens)


def train_tokenizer(corpus: Path, out: Path, vocab_size: int, max_bytes: int = 1 << 30,
                    eval_bytes: int = 8 << 20, baseline: bool = True) -> dict:
    """Trains, evaluates and saves; returns the compression report."""
    corpus, out = Path(corpus), Path(out)
    check_vocab(vocab_size)
    outdir.claim(out, "train tokenizer", WRITES)
    start = time.time()
    texts = sample_texts(corpus, "train", max_bytes)
    train_bytes = sum(len(t.encode("utf-8")) for t in texts)
    tokenizer = train_bpe(texts, vocab_size, CODE_PATTERN)
    train_seconds = time.time() - start
    reference = train_bpe(texts, vocab_size, GPT4_PATTERN) if baseline else None
    del texts

    report = {"vocab_size": tokenizer.vocab_size, "train_bytes": train_bytes,
              "train_seconds": round(train_seconds, 1), "corpus": str(corpus),
              "corpus_stats_sha256": _stats_sha256(corpus), "val": {}}
    for kind in ("code", "prose"):
        val = sample_texts(corpus, "val", eval_bytes, kind)
        entry = {"docs": len(val), "bytes": sum(len(t.encode("utf-8")) for t in val)}
        if val:
            entry["nanocode"] = round(bytes_per_token(tokenizer, val), 4)
            if reference is not None:
                entry["gpt4_split"] = round(bytes_per_token(reference, val), 4)
        report["val"][kind] = entry
    code = report["val"]["code"]
    if "gpt4_split" in code:
        report["code_tokenizer_wins_on_code"] = code["nanocode"] > code["gpt4_split"]

    for name in (COMPRESSION, "tokenizer.json"):  # invalidate first: a crash mid-write leaves no marker
        (out / name).unlink(missing_ok=True)
    tmp = out / f".tokenizer.json.{os.getpid()}"
    tokenizer.save(tmp)
    tmp.replace(out / "tokenizer.json")
    tmp = out / f".{COMPRESSION}.{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / COMPRESSION)
    return report


def _stats_sha256(corpus: Path) -> str:
    return hashlib.sha256((Path(corpus) / corpus_io.STATS).read_bytes()).hexdigest()


def is_complete(out: Path, corpus: Path | None = None) -> bool:
    """The tokenizer and its report exist (and, given `corpus`, were trained on that very corpus build)."""
    report_path, out = Path(out) / COMPRESSION, Path(out)
    if not (report_path.is_file() and (out / "tokenizer.json").is_file()):
        return False
    if corpus is None:
        return True
    try:
        return json.loads(report_path.read_text()).get("corpus_stats_sha256") == _stats_sha256(corpus)
    except (OSError, json.JSONDecodeError):
        return False


def print_report(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    table = Table(title=f"bytes per token (vocab {report['vocab_size']:,}, trained on "
                        f"{report['train_bytes'] / 1e6:,.1f} MB in {report['train_seconds']} s)")
    for col in ("validation", "MB", "nanocode (code split)", "GPT-4 split"):
        table.add_column(col, justify="left" if col == "validation" else "right")
    for kind, entry in report["val"].items():
        table.add_row(kind, f"{entry['bytes'] / 1e6:,.2f}", str(entry.get("nanocode", "-")),
                      str(entry.get("gpt4_split", "-")))
    console.print(table)
    if report.get("code_tokenizer_wins_on_code") is False:
        console.print("[yellow]warning: the GPT-4-split baseline compresses validation code better[/]")


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    from nanocode.lookup import nanocode_home
    out = a.out or nanocode_home() / "tokenizer"
    try:
        report = train_tokenizer(a.corpus or nanocode_home() / "data" / "corpus", out, a.vocab, a.max_bytes,
                                 baseline=a.baseline)
    except (FileNotFoundError, ValueError, common.StageError) as e:
        return common.fail(e)
    print_report(report)
    print(f"tokenizer written to {out / 'tokenizer.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
