"""Pretraining batches: documents packed best-fit into rows, fill-in-the-middle on a fraction of them.

`Loader(...).batch(step)` is int32[B, T+1] (inputs `[:, :-1]`, targets `[:, 1:]`) and a pure function of
(seed, step, process index): a resumed run, or host 3 of 8, computes exactly the rows it would have seen.
It does so by replaying one global packing plan, deterministic in the seed, that all processes share:
process p of P takes global rows [(step*P + p)*B, (step*P + p + 1)*B). Replaying is cheap (a few
Python operations per piece, ~1 s per 100M tokens); the plan for steps already asked for is kept.

The document stream is every document of the split in a seeded random order, epoch after epoch. A
document enters as one *unit* (or, when longer than a row, as consecutive row-sized units). A fraction
`fim_rate` of documents becomes PSM fill-in-the-middle units, split at two uniform random points:
    <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle <|fim_end|>
(Bavarian et al. 2022). Long documents get FIM per row-sized unit, so every FIM example fits in one
row ("context-level" FIM). The cut points are token boundaries, chosen over character-level cuts
because shards hold tokens: the loader stays a cheap numpy function with no tokenizer on the training
hosts. The price: at inference the prefix and suffix are tokenized separately, which can differ from
the in-document tokens next to the cut; character-level cuts (re-tokenizing each FIM document, as
StarCoder's Megatron pipeline does) are the fix if FIM quality falls short.

Packing (BOS-aligned best fit): every row starts with `<|bos|>`; each piece placed in a
row is `<|bos|>` + a slice of a unit. A row is filled from a window of `window` pending pieces, always
taking the largest piece that fits the remaining space. Only when none fits is the largest piece cropped
to fill the row exactly; the rest of it stays in the window and later starts another piece (after its
own `<|bos|>`). No token is ever lost, duplicated or padded, and pretraining trains on every position.
Packed rows are served in a seeded shuffle within blocks of `shuffle_rows` rows, because best fit puts
the row-sized chunks of a long file in consecutive rows: a 32-row batch drew on 43 distinct files on
average shuffled, 20 in packing order (2026-11-22, training/LOG.md).
"""
import bisect
import hashlib
import struct
from array import array
from pathlib import Path

import numpy as np

from training.data.shards import TokenShards

_INF = float("inf")


# Randomness comes from hashes, not from a numpy Generator stream (which numpy may change between
# versions): a resumed run, or a host with another numpy, computes the very same batches.

def _hash64(*keys: int) -> int:
    digest = hashlib.blake2b(struct.pack(f"<{len(keys)}q", *keys), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _uniform(*keys: int) -> float:
    return _hash64(*keys) / 2**64


def _permutation(n: int, *keys: int) -> np.ndarray:
    """A permutation of range(n): the order of splitmix64 hashes of (keys, i)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = np.uint64(_hash64(*keys)) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.argsort(z, kind="stable")


class Loader:
    def __init__(self, token_dir: Path, batch_size: int, seq_len: int, split: str = "train",
                 fim_rate: float = 0.5, seed: int = 0, process_index: int = 0, process_count: int = 1,
                 window: int = 1024, shuffle_rows: int = 4096, tokenizer: Path | None = None):
        if batch_size < 1 or seq_len < 8 or window < 1 or shuffle_rows < 1:
            raise ValueError(f"need batch_size >= 1, seq_len >= 8, window >= 1 and shuffle_rows >= 1 (got "
                             f"{batch_size}, {seq_len}, {window}, {shuffle_rows})")
        if not 0.0 <= fim_rate <= 1.0:
            raise ValueError(f"fim_rate must be in [0, 1], got {fim_rate}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} is not in [0, process_count={process_count})")
        self.data = TokenShards(token_dir, split, tokenizer)
        if self.data.n_docs == 0:
            raise ValueError(f"the {split!r} split of {token_dir} has no documents; rebuild the corpus with "
                             "more sources (or a larger validation fraction)")
        self.batch_size, self.seq_len, self.row_len = batch_size, seq_len, seq_len + 1
        self.fim_rate, self.seed, self.window, self.shuffle_rows = fim_rate, seed, window, shuffle_rows
        self.process_index, self.process_count = process_index, process_count
        special = self.data.meta["special"]
        self.vocab_size = self.data.meta["vocab_size"]
        self.bos = special["bos"]
        self.fim_ids = [special[k] for k in ("fim_prefix", "fim_suffix", "fim_middle", "fim_end")]
        self.n_docs, self.n_tokens = self.data.n_docs, self.data.n_tokens
        # The plan. Units: a document chunk [lo, hi) and its FIM cut points (cut1 = -1: plain).
        self._unit_doc, self._unit_lo, self._unit_hi = array("q"), array("q"), array("q")
        self._unit_cut1, self._unit_cut2 = array("q"), array("q")
        # Pieces: the slice [start, stop) of a unit's body; row r holds pieces row_ptr[r]:row_ptr[r+1].
        self._piece_unit, self._piece_start, self._piece_stop = array("q"), array("q"), array("q")
        self._row_ptr = array("q", [0])
        self._pool: list[tuple[int, int, int]] = []  # sorted (length incl. bos, unit, start in body)
        self._stream = 0  # next position in the endless document stream
        self._perm_epoch, self._perm = -1, None
        self._shuffle_block, self._shuffle = -1, None
        self.n_crops = 0

    @property
    def rows_per_epoch(self) -> float:
        """Rows one pass over the split fills (each document adds a bos, a FIM one 4 more tokens)."""
        return (self.n_tokens + self.n_docs * (1 + 4 * self.fim_rate)) / self.row_len

    def batch(self, step: int) -> np.ndarray:
        return self.batch_with_segments(step)[0]

    def batch_with_segments(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int32[B, T+1], segments int32[B, T+1]): segments number the pieces in each row
        (0, 1, 2, ...), for trainers that mask attention across document boundaries."""
        first = (step * self.process_count + self.process_index) * self.batch_size
        tokens = np.empty((self.batch_size, self.row_len), np.int32)
        segments = np.empty((self.batch_size, self.row_len), np.int32)
        for b in range(self.batch_size):
            pos = 0
            for k, (unit, start, stop) in enumerate(self.pieces(first + b)):
                tokens[b, pos] = self.bos
                tokens[b, pos + 1:pos + 1 + stop - start] = self.unit_body(unit)[start:stop]
                segments[b, pos:pos + 1 + stop - start] = k
                pos += 1 + stop - start
            assert pos == self.row_len, "packing must fill every row exactly"
        return tokens, segments

    # --- the plan ------------------------------------------------------------------------------------

    def pieces(self, row: int) -> list[tuple[int, int, int]]:
        """(unit, start, stop) of each piece in global row `row` (as served), in order."""
        block, i = divmod(row, self.shuffle_rows)
        if block != self._shuffle_block:
            self._shuffle_block = block
            self._shuffle = _permutation(self.shuffle_rows, self.seed, 1, block)
        planned = block * self.shuffle_rows + int(self._shuffle[i])
        self._ensure_rows((block + 1) * self.shuffle_rows)
        lo, hi = self._row_ptr[planned], self._row_ptr[planned + 1]
        return list(zip(self._piece_unit[lo:hi], self._piece_start[lo:hi], self._piece_stop[lo:hi]))

    def unit(self, u: int) -> dict:
        return {"doc": self._unit_doc[u], "lo": self._unit_lo[u], "hi": self._unit_hi[u],
                "fim": None if self._unit_cut1[u] < 0 else (self._unit_cut1[u], self._unit_cut2[u])}

    def unit_body(self, u: int) -> np.ndarray:
        """The tokens a unit stands for, without its bos: the chunk, or its PSM rearrangement."""
        doc = self.data.doc(self._unit_doc[u])
        lo, hi, c1, c2 = self._unit_lo[u], self._unit_hi[u], self._unit_cut1[u], self._unit_cut2[u]
        if c1 < 0:
            return doc[lo:hi]
        prefix, suffix, middle, end = self.fim_ids
        return np.concatenate([[prefix], doc[lo:c1], [suffix], doc[c2:hi], [middle], doc[c1:c2], [end]])

    def pending(self) -> list[tuple[int, int]]:
        """(unit, start) of every piece still waiting in the window."""
        return [(unit, start) for _, unit, start in self._pool]

    def _ensure_rows(self, n_rows: int) -> None:
        while len(self._row_ptr) - 1 < n_rows:
            self._pack_row()

    def _pack_row(self) -> None:
        pool, remaining = self._pool, self.row_len
        while remaining > 0:
            self._refill()
            i = bisect.bisect_right(pool, (remaining, _INF))
            if i > 0:  # best fit: the largest piece that fits (the oldest among equals)
                i = bisect.bisect_left(pool, (pool[i - 1][0], -1))
                length, unit, start = pool.pop(i)
                self._place(unit, start, start + length - 1)
                remaining -= length
            else:  # nothing fits: crop the largest piece to fill the row; its rest waits in the window
                length, unit, start = pool.pop()
                stop = start + remaining - 1
                self._place(unit, start, stop)
                bisect.insort(pool, (length - (remaining - 1), unit, stop))
                self.n_crops += 1
                remaining = 0
        self._row_ptr.append(len(self._piece_unit))

    def _place(self, unit: int, start: int, stop: int) -> None:
        self._piece_unit.append(unit)
        self._piece_start.append(start)
        self._piece_stop.append(stop)

    def _refill(self) -> None:
        while len(self._pool) < self.window:
            epoch, i = divmod(self._stream, self.n_docs)
            if epoch != self._perm_epoch:
                self._perm_epoch = epoch
                self._perm = _permutation(self.n_docs, self.seed, 0, epoch)
            doc = int(self._perm[i])
            self._stream += 1
            fim = _uniform(self.seed, 2, epoch, doc, 0) < self.fim_rate
            n = int(self.data.doc_len[doc])
            chunk = self.row_len - 1 - (4 if fim else 0)  # a unit plus its bos fits one row
            for k, lo in enumerate(range(0, max(n, 1), chunk)):
                hi = min(n, lo + chunk)
                c1 = c2 = -1
                if fim:
                    a = lo + int(_uniform(self.seed, 2, epoch, doc, 2 * k + 1) * (hi - lo + 1))
                    b = lo + int(_uniform(self.seed, 2, epoch, doc, 2 * k + 2) * (hi - lo + 1))
                    c1, c2 = min(a, b), max(a, b)
                unit = len(self._unit_doc)
                for column, value in zip((self._unit_doc, self._unit_lo, self._unit_hi, self._unit_cut1,
                                          self._unit_cut2), (doc, lo, hi, c1, c2)):
                    column.append(value)
                body = hi - lo + (4 if fim else 0)
                bisect.insort(self._pool, (1 + body, unit, 0))
