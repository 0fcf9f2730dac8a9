"""`nanocode eval tokenizer`: bytes per token of the model's tokenizer on the corpus's validation split,
code and prose separately (more bytes per token = shorter sequences = more text per context and per FLOP).

Text is encoded exactly as training and chat encode it (special-token matching off), and bytes are UTF-8
bytes of the documents, so the figure is comparable with bits per byte. The documents are the tokenizer
stage's deterministic sample of the split (tokenizer_train.sample_texts), so this eval and the stage's
compression.json measure the same texts when given the same budget.
"""
import sys
from pathlib import Path

from nanocode.tokenizer import Tokenizer
from training import common
from training.eval import results
from training.eval.results import Table, fmt


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode eval tokenizer", description="Bytes per token of the model's "
                                "tokenizer on validation code and prose.")
    results.model_flags(p, seed=False)
    p.add_argument("--data", type=Path, help="Corpus directory (from `nanocode data corpus`; default: the one "
                   "behind the model's training shards, else $NANOCODE_HOME/data/corpus).")
    p.add_argument("--max-mb", type=common.positive, default=8.0, help="Validation text per kind, in MB.")
    p.add_argument("--split", default="val", choices=("val", "train"))
    return p

KINDS = ("code", "prose")


def default_corpus_dir(model_dir: Path) -> Path:
    """The corpus behind the shards the model was trained on (their meta.json names it), else
    $NANOCODE_HOME/data/corpus."""
    from training.eval.bpb import default_token_dir
    from training.data.shards import read_meta

    try:
        corpus = read_meta(default_token_dir(model_dir)).get("corpus")
    except (FileNotFoundError, ValueError):  # no shards, or a damaged meta.json (JSONDecodeError)
        corpus = None
    if corpus:
        return Path(corpus)
    from nanocode.lookup import nanocode_home
    return nanocode_home() / "data" / "corpus"


def measure(tok: Tokenizer, texts: list[str]) -> dict:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(texts)) if texts else 0
    return {"docs": len(texts), "bytes": n_bytes, "tokens": n_tokens,
            "bytes_per_token": n_bytes / n_tokens if n_tokens else None}


def measure_kinds(tok: Tokenizer, texts_by_kind: dict[str, list[str]]) -> dict:
    by_kind = {kind: measure(tok, texts) for kind, texts in texts_by_kind.items()}
    every = {k: sum(m[k] for m in by_kind.values()) for k in ("docs", "bytes", "tokens")}
    every["bytes_per_token"] = every["bytes"] / every["tokens"] if every["tokens"] else None
    return {"vocab_size": tok.vocab_size, "by_kind": by_kind, "all": every}


def evaluate(tok: Tokenizer, corpus_dir, split: str = "val", max_bytes_per_kind: int = 8 << 20) -> dict:
    from training.data.tokenizer_train import sample_texts

    texts = {kind: sample_texts(corpus_dir, split, max_bytes_per_kind, kind) for kind in KINDS}
    return measure_kinds(tok, texts) | {"corpus": str(corpus_dir), "split": split,
                                         "max_bytes_per_kind": max_bytes_per_kind}


def summary_table(result: dict) -> Table:
    rows = [[kind, fmt(t["bytes_per_token"]), fmt(t["bytes"]), fmt(t["tokens"]), fmt(t["docs"])]
            for kind, t in [*result["by_kind"].items(), ("all", result["all"])]]
    return Table(f"Tokenizer compression ({result['vocab_size']} tokens, {result.get('split', 'val')} split)",
                 ["text", "bytes/token", "bytes", "tokens", "docs"], rows)


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    from nanocode.tokenizer import TokenizerError
    try:
        model_dir = results.model_dir(a.model)
        tok = Tokenizer.load(model_dir)
        result = evaluate(tok, a.data or default_corpus_dir(model_dir), a.split, int(a.max_mb * 1e6))
    except (common.StageError, TokenizerError, FileNotFoundError) as e:
        return common.fail(e)
    results.finish(model_dir, "tokenizer", result, summary_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
