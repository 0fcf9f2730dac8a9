"""Validation bits per byte, code and prose separately: the pretraining curve's eval and `nanocode eval bpb`.

Bits per byte rather than loss per token, so that models with different tokenizers compare: the summed
cross-entropy in bits over the validation targets divided by the UTF-8 bytes those targets stand for.
Special tokens stand for no text (tokenizer.token_byte_lengths is 0 for them), so predicting `<|bos|>`
counts neither loss nor bytes.

The rows are fixed: the validation documents of one kind, in shard order, each after a `<|bos|>`,
concatenated and cut into rows of T+1 tokens (row r starts where row r-1's targets ended), no FIM. The
same rows are used at every evaluation of a run, so the curve only moves with the model. `nanocode eval
bpb` runs the same computation on a saved model, after checking that the token shards were made with the
model's own tokenizer.
"""
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from training import common, mesh as meshlib
from training.losses import token_losses_eval
from training.data.shards import KINDS, TokenizerMismatch, TokenShards, read_meta
from training.eval import results
from training.eval.results import Table, fmt


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode eval bpb", description="Bits per byte on the validation split, "
                                "code and prose separately.")
    results.model_flags(p, seed=False)
    p.add_argument("--data", type=Path, help="Token shards (from `nanocode data shards`; default: those the "
                   "model's run trained on, else $NANOCODE_HOME/data/tokens).")
    p.add_argument("--max-tokens", type=int, default=2_097_152, help="Validation tokens per kind.")
    p.add_argument("--batch-rows", type=int, default=8, help="Sequences per forward pass.")
    return p


def val_rows(token_dir: Path, kind: str, seq_len: int, max_tokens: int, split: str = "val") -> np.ndarray:
    """int32[R, T+1]: up to max_tokens targets of one kind ('code' or 'prose'); the last row is padded with
    -1 (padding targets count nothing)."""
    shards = TokenShards(token_dir, split)
    bos = shards.meta["special"]["bos"]
    wanted = KINDS.index(kind)
    stream, total = [], 0
    for d in np.flatnonzero(shards.kind == wanted):
        doc = np.asarray(shards.doc(int(d)), np.int64)
        stream.append(np.concatenate([[bos], doc]))
        total += len(doc) + 1
        if total > max_tokens:
            break
    if not stream:
        return np.zeros((0, seq_len + 1), np.int32)
    flat = np.concatenate(stream)[:max_tokens + 1]
    n_rows = max(1, math.ceil((len(flat) - 1) / seq_len))
    rows = np.full((n_rows, seq_len + 1), -1, np.int64)
    for r in range(n_rows):
        piece = flat[r * seq_len:r * seq_len + seq_len + 1]
        rows[r, :len(piece)] = piece
    return rows.astype(np.int32)


def make_bpb_step(graphdef, byte_lengths: np.ndarray):
    """jitted (params, rows int32[B, T+1]) -> (summed nats, summed bytes) over targets that stand for text."""
    byte_lengths = jnp.asarray(byte_lengths, jnp.int32)

    @jax.jit
    def step(params, rows_BxT1):
        ids_BxT = jnp.maximum(rows_BxT1[:, :-1], 0)
        targets_BxT = rows_BxT1[:, 1:]
        counted_BxT = targets_BxT >= 0
        safe_BxT = jnp.where(counted_BxT, targets_BxT, 0)
        bytes_BxT = jnp.where(counted_BxT, byte_lengths[safe_BxT], 0)
        nll_BxT = token_losses_eval(nnx.merge(graphdef, params), ids_BxT, safe_BxT)
        return jnp.sum(jnp.where(bytes_BxT > 0, nll_BxT, 0.0)), jnp.sum(bytes_BxT).astype(jnp.float32)
    return step


def bits_per_byte(step, params, rows: np.ndarray, batch_rows: int, mesh=None) -> tuple[float, int]:
    """(bits per byte, counted target tokens) of `rows`, `batch_rows` at a time (sharded over `mesh`)."""
    if len(rows) == 0:
        return float("nan"), 0
    sharding = meshlib.batch_sharding(mesh, ndim=2, batch_axis=0) if mesh is not None else None
    nats, n_bytes = 0.0, 0.0
    pad = (-len(rows)) % batch_rows
    rows = np.concatenate([rows, np.full((pad, rows.shape[1]), -1, np.int32)])  # padding rows count nothing
    for i in range(0, len(rows), batch_rows):
        batch = rows[i:i + batch_rows]
        if sharding is not None:
            first, count = meshlib.local_rows(batch_rows)
            batch = meshlib.global_batch(batch[first:first + count], sharding, batch.shape)
        n, b = step(params, batch)
        nats, n_bytes = nats + float(n), n_bytes + float(b)
    counted = int((rows[:, 1:] >= 0).sum())
    return nats / math.log(2) / max(n_bytes, 1.0), counted


class BpbEvaluator:
    """Bits per byte of one run's parameters on fixed validation rows: the rows are read and the step is
    compiled once, then each call costs only the forward passes."""

    def __init__(self, graphdef, token_dir: Path, byte_lengths: np.ndarray, seq_len: int, batch_rows: int,
                 max_tokens: int, mesh=None):
        self.step = make_bpb_step(graphdef, byte_lengths)
        self.batch_rows, self.mesh = batch_rows, mesh
        rows = {kind: val_rows(token_dir, kind, seq_len, max_tokens) for kind in KINDS}
        self.rows = {kind: r for kind, r in rows.items() if len(r)}  # a kind with no validation documents

    def __call__(self, params) -> dict:
        """{"bpb": {"code": x, "prose": y}, "tokens": {"code": n, "prose": m}}"""
        result = {"bpb": {}, "tokens": {}}
        for kind, rows in self.rows.items():
            result["bpb"][kind], result["tokens"][kind] = bits_per_byte(self.step, params, rows, self.batch_rows,
                                                                        self.mesh)
        return result


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
    """`nanocode eval bpb` of a GPT (e.g. a loaded model directory): {"bpb": {kind: bits/byte}, "tokens":
    {kind: targets counted}, ...}. Raises ValueError when the shards were made with another tokenizer (their
    bits per byte would be meaningless) or are missing."""
    try:
        meta = read_meta(token_dir, Path(model_dir))
    except TokenizerMismatch:
        raise ValueError(f"the token shards in {token_dir} were made with another tokenizer than the model's "
                         f"({Path(model_dir) / 'tokenizer.json'}); pass --data with the shards it was trained "
                         "on, or rebuild them with `nanocode data shards`") from None
    if "val" not in meta.get("splits", {}):
        raise ValueError(f"{token_dir} has no validation split; rebuild it with `nanocode data shards`")
    graphdef, params = nnx.split(model)
    seq_len = seq_len or model.config.seq_len
    result = BpbEvaluator(graphdef, token_dir, tok.token_byte_lengths, seq_len, batch_rows, max_tokens)(params)
    if not result["bpb"]:
        raise ValueError(f"the validation split of {token_dir} holds no documents")
    return result | {"data": str(token_dir), "max_tokens_per_kind": max_tokens, "seq_len": seq_len}


def summary_table(result: dict) -> Table:
    rows = [[kind, fmt(value, 4), fmt(result.get("tokens", {}).get(kind))] for kind, value in result["bpb"].items()]
    return Table("Validation bits per byte", ["text", "bits/byte", "tokens"], rows)


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    if a.max_tokens < 1 or a.batch_rows < 1:
        return common.fail("--max-tokens and --batch-rows must be >= 1")
    try:
        model_dir = results.model_dir(a.model)
        net, tok, _ = results.load(model_dir)
        result = evaluate(net, tok, model_dir, a.data or default_token_dir(model_dir), max_tokens=a.max_tokens,
                          batch_rows=a.batch_rows)
    except (common.StageError, ValueError, FileNotFoundError) as e:
        return common.fail(e)
    results.finish(model_dir, "bpb", result, summary_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
