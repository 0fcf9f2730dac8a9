"""The corpus on disk: parquet shards of documents plus `stats.json` (the format is documented in
`training/data/corpus.py`), built in `<out>/.partial/` and moved into place by `replace_files`."""
import fnmatch
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


PARTIAL = ".partial"  # where a data stage builds its files, inside its own --out (training/outdir.py claims it)


def new_partial(out: Path) -> Path:
    partial = Path(out) / PARTIAL
    shutil.rmtree(partial, ignore_errors=True)  # a build killed midway: ours, inside our own directory
    partial.mkdir(parents=True)
    return partial


def replace_files(partial: Path, out: Path, record: str, patterns: tuple[str, ...]) -> None:
    """Move a finished build from `partial` into `out`, replacing the previous build's files. The record
    (stats.json, meta.json) goes first and comes back last, so a reader never takes a half-replaced directory
    for complete; only files matching `patterns` (what the stage writes) are removed: anything else in `out`
    stays (the directory is swapped file by file, not renamed: its lock lives in it)."""
    (out / record).unlink(missing_ok=True)
    for p in out.iterdir():
        if p.is_file() and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in patterns):
            p.unlink()
    for p in sorted(partial.iterdir()):
        if p.name != record:
            p.replace(out / p.name)
    (partial / record).replace(out / record)
    partial.rmdir()
