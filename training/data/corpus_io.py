"""The corpus on disk: parquet shards of documents plus `stats.json` (the format is documented in
`training/data/corpus.py`), written through a temporary directory that replaces the old one in one rename."""
import shutil
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("path", pa.string()), ("lang", pa.string()), ("kind", pa.string()),
                    ("license", pa.string()), ("text", pa.string())])
STATS = "stats.json"


def is_complete(out: Path) -> bool:
    return (Path(out) / STATS).is_file()


def shard_files(corpus: Path, split: str) -> list[Path]:
    return sorted(Path(corpus).glob(f"{split}_*.parquet"))


def read_documents(corpus: Path, split: str, columns=("path", "kind", "text")) -> Iterator[dict]:
    """Rows of a split, in order, as dicts of the requested columns."""
    if not is_complete(corpus):
        raise FileNotFoundError(f"no complete corpus in {corpus}: run `nanocode data corpus` first")
    for shard in shard_files(corpus, split):
        for batch in pq.ParquetFile(shard).iter_batches(columns=list(columns), batch_size=1024):
            yield from batch.to_pylist()


class ShardWriter:
    """Rolling parquet shards per split (zstd, 8 MiB row groups)."""

    def __init__(self, out: Path, shard_bytes: int):
        self.out, self.shard_bytes = out, shard_bytes
        self.rows: dict[str, list[dict]] = {"train": [], "val": []}
        self.buffered = {"train": 0, "val": 0}
        self.writers: dict[str, tuple[pq.ParquetWriter, int]] = {}
        self.count = {"train": 0, "val": 0}

    def write(self, split: str, row: dict) -> None:
        self.rows[split].append(row)
        self.buffered[split] += len(row["text"])
        if self.buffered[split] >= 8 << 20:
            self._flush(split)

    def _flush(self, split: str) -> None:
        if not self.rows[split]:
            return
        writer, written = self.writers.get(split, (None, 0))
        if writer is None or written >= self.shard_bytes:
            if writer is not None:
                writer.close()
            path = self.out / f"{split}_{self.count[split]:05d}.parquet"
            writer, written = pq.ParquetWriter(path, SCHEMA, compression="zstd"), 0
            self.count[split] += 1
        writer.write_table(pa.Table.from_pylist(self.rows[split], schema=SCHEMA))
        self.writers[split] = (writer, written + self.buffered[split])
        self.rows[split], self.buffered[split] = [], 0

    def close(self) -> None:
        for split in self.rows:
            self._flush(split)
        for writer, _ in self.writers.values():
            writer.close()


def replace_dir(new: Path, out: Path) -> None:
    """Swap the finished directory into place; a reader never sees a half-written corpus."""
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
