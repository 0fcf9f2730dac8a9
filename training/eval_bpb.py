"""`nanocode eval bpb`: validation bits per byte, code and prose separately.

Bits per byte (not loss per token) so that models with different tokenizers compare: the summed
cross-entropy in bits over the validation tokens divided by the UTF-8 bytes those tokens stand for.
Special tokens count no bytes (tokenizer.token_byte_lengths). The computation is the pretraining one
(training/evaluate_bpb.py, the same rows the training curve used); this module runs it on a saved model,
after checking that the token shards were made with the model's own tokenizer.
"""
import json
from pathlib import Path

from training.eval_results import Table, fmt


def default_token_dir(model_dir: Path) -> Path:
    """The shards the model was trained on (the `data` its run's log.jsonl records, next to the model
    directory), else $NANOCODE_HOME/data/tokens."""
    log = Path(model_dir).parent / "log.jsonl"
    if log.is_file():
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("event") in ("start", "resume") and record.get("data"):
                    return Path(record["data"])
    from nanocode.lookup import nanocode_home
    return nanocode_home() / "data" / "tokens"


def evaluate(model, tok, model_dir: Path, token_dir: Path, *, max_tokens: int = 2_097_152,
             batch_rows: int = 8, seq_len: int | None = None) -> dict:
    """{"bpb": {kind: bits/byte}, "tokens": {kind: targets counted}, ...}. Raises ValueError when the shards
    were made with another tokenizer (their bits per byte would be meaningless) or are missing."""
    from training.evaluate_bpb import evaluate_bpb
    from training.shards import TokenizerMismatch, read_meta

    try:
        meta = read_meta(token_dir, Path(model_dir))
    except TokenizerMismatch:
        raise ValueError(f"the token shards in {token_dir} were made with another tokenizer than the model's "
                         f"({Path(model_dir) / 'tokenizer.json'}); pass --data with the shards it was trained "
                         "on, or rebuild them with `nanocode data shards`") from None
    if "val" not in meta.get("splits", {}):
        raise ValueError(f"{token_dir} has no validation split; rebuild it with `nanocode data shards`")
    result = evaluate_bpb(model, tok, token_dir, seq_len=seq_len, batch_rows=batch_rows, max_tokens=max_tokens)
    if not result["bpb"]:
        raise ValueError(f"the validation split of {token_dir} holds no documents")
    return result | {"data": str(token_dir), "max_tokens_per_kind": max_tokens,
                     "seq_len": seq_len or model.config.seq_len}


def summary_table(result: dict) -> Table:
    rows = [[kind, fmt(value, 4), fmt(result.get("tokens", {}).get(kind))] for kind, value in result["bpb"].items()]
    return Table("Validation bits per byte", ["text", "bits/byte", "tokens"], rows)
