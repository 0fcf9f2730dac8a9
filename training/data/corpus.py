"""`nanocode data corpus`: code already on disk -> a cleaned, deduplicated, decontaminated corpus.

Sources: the running Python's standard library and site-packages, plus any directories named. Files
are classified by extension (Python, other languages tagged, Markdown/reST/text as prose; the README
in each installed package's METADATA is prose too), then go through, in order: the byte budget
(`--max-bytes`), license (`--licenses permissive`), size, encoding, the quality filters of
`filters.py`, HumanEval decontamination, PII scrubbing, exact and near dedup; a fraction of packages
becomes repository-level documents (`repo_docs.py`). Files are read and filtered in a process pool;
dedup runs in this process on the results in input order, so the output is the same for any worker
count (165 MB of source took ~2 min on the 2-core dev box, 2026-11-22).

Output directory (the format later stages and the eval helper read; training/outdir.py decides which
directories it may write into):
    train_00000.parquet, ..., val_00000.parquet
        one row per document, columns: path (str: `<source label>/<path in source>`, a repository
        document's is its package followed by `/`), lang (str: `python`, `c`, `markdown`, ...), kind
        (str: `code` | `prose`), license (str: SPDX id or expression, or `unknown`), text (str)
    stats.json
        what was seen, removed (per filter) and kept; written last: it marks the corpus complete.
The split is a hash of the path (of the package for a repository document), so it is the same on every
machine and for every run, and a file never moves between train and val when the corpus is rebuilt.
Validation holds 1% of code and 10% of prose (prose is ~1% of the bytes and needs its own bits-per-byte).
"""
import hashlib
import json
import os
import site
import sys
import sysconfig
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from email.parser import HeaderParser
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

from training.data import filters, licenses, pii, repo_docs
from training.data.corpus_io import (STATS, ShardWriter, is_complete, new_partial, read_documents,  # noqa: F401 (API)
                                     replace_files)
from training.data.dedup import Deduplicator, content_hash, signatures, words

from training import common, outdir


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode data corpus", description="Collect, clean, deduplicate and split "
                                "code already on disk (no network).")
    p.add_argument("--src", type=Path, action="append", help="A directory of code to add (repeatable).")
    p.add_argument("--out", type=Path, help="Output directory (default: $NANOCODE_HOME/data/corpus).")
    p.add_argument("--only-src", action="store_true", help="Skip the default sources (this Python's stdlib and "
                   "site-packages): use only the --src directories.")
    p.add_argument("--licenses", default=CorpusConfig.licenses, help="all | permissive (MIT, BSD, Apache, PSF, "
                   "ISC, ...). Default: %(default)s.")
    p.add_argument("--repo-fraction", type=float, default=CorpusConfig.repo_fraction, help="Fraction of packages "
                   "written as one repository-level document in import order. Default: %(default)s.")
    p.add_argument("--val-fraction", type=float, default=CorpusConfig.val_fraction, help="Fraction of code "
                   "documents held out for validation (prose: 10x, at most 0.5). Default: %(default)s.")
    p.add_argument("--max-bytes", type=common.size, help="Read at most this much source (a reproducible random "
                   "sample of files), e.g. 50M.")
    p.add_argument("--workers", type=common.count, default=0, help="Processes (default: all cores).")
    return p


SHARDS = ("train_*.parquet", "val_*.parquet")
WRITES = (STATS, *SHARDS, ".partial")  # what this stage writes into --out (stats.json, its record, first)


# Directories that hold copies, caches or environments rather than a project's own source.
SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", "node_modules", "site-packages", "dist-packages",
             ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Source:
    label: str   # first component of every corpus path: `stdlib`, `site-packages`, a directory's name
    root: Path
    kind: str    # `stdlib` | `site` | `dir`: decides how packages and licenses are found


@dataclass(frozen=True)
class CorpusConfig:
    sources: tuple[Source, ...]
    out: Path
    licenses: str = "all"                # `all` | `permissive`
    repo_fraction: float = 0.1           # of packages emitted as repository-level documents
    repo_max_chars: int = 200_000
    val_fraction: float = 0.01           # of code documents
    prose_val_fraction: float = 0.1      # prose is scarce (~1% of bytes); its bits-per-byte needs enough
    max_bytes: int | None = None         # input budget: a deterministic sample of files up to this size
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    near_dup_threshold: float = 0.85
    decontam_ngram: int = 13
    shard_bytes: int = 128 << 20
    quality: filters.FilterConfig = filters.FilterConfig()


class FileEntry(NamedTuple):
    abspath: str
    path: str        # `<label>/<relpath>`
    lang: str
    kind: str
    package: str
    license: str
    size: int


def default_sources() -> list[Source]:
    """This interpreter's standard library and site-packages (the venv's, if one is active)."""
    sources = [Source("stdlib", Path(sysconfig.get_paths()["stdlib"]).resolve(), "stdlib")]
    sites = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        sites.append(site.getusersitepackages())
    for i, d in enumerate(dict.fromkeys(str(Path(s).resolve()) for s in sites if os.path.isdir(s))):
        sources.append(Source("site-packages" if i == 0 else f"site-packages-{i + 1}", Path(d), "site"))
    return sources


def directory_sources(dirs: list[Path]) -> list[Source]:
    out, labels = [], set()
    for d in dirs:
        d = Path(d).expanduser().resolve()
        if not d.is_dir():
            raise FileNotFoundError(f"--src {d} is not a directory; name a directory of code to add")
        label, n = d.name or "root", 2
        while label in labels | {"stdlib", "site-packages"}:
            label, n = f"{d.name}-{n}", n + 1
        labels.add(label)
        out.append(Source(label, d, "dir"))
    return out


def split_of(key: str, val_fraction: float) -> str:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") < val_fraction * 2**64 else "train"


# --- discovery (this process) ---------------------------------------------------------------------

def discover(config: CorpusConfig, stats: dict) -> list[FileEntry]:
    out_dirs = {Path(config.out).resolve()}  # never read our own output (or its .partial/) back in
    entries, seen_real = [], set()
    for source in config.sources:
        found_before = len(entries)
        index = licenses.SitePackages(source.root) if source.kind == "site" else \
            licenses.Repositories(source.root, source.label) if source.kind == "dir" else None
        for dirpath, dirnames, filenames in os.walk(source.root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".dist-info")
                                 and (here / d).resolve() not in out_dirs)
            for name in sorted(filenames):
                abspath = here / name
                try:
                    real, size = abspath.resolve(), abspath.stat().st_size
                except OSError:
                    continue  # a dangling symlink
                if real in seen_real:
                    continue  # one file reachable from two sources (or a symlink) counts once
                seen_real.add(real)
                kind = filters.classify(name)
                if kind is None:
                    stats["non_source"]["files"] += 1
                    stats["non_source"]["bytes"] += size
                    continue
                rel = abspath.relative_to(source.root).as_posix()
                if index is None:
                    package, lic = rel.split("/")[0].removesuffix(".py"), "PSF-2.0"
                else:
                    package, lic = index.lookup(rel)
                entries.append(FileEntry(str(abspath), f"{source.label}/{rel}", *kind, package, lic, size))
        if source.kind == "site":
            entries += _package_descriptions(source, index)
        if source.kind == "dir" and len(entries) == found_before:
            raise ValueError(f"--src {source.root} holds no source files (code, Markdown, reST or text); name a "
                             "directory of code")
    return entries


def _package_descriptions(source: Source, index: licenses.SitePackages) -> list[FileEntry]:
    """The long description in each `*.dist-info/METADATA` (the package's README): most of the prose
    an environment holds. The worker keeps only the body after the RFC 822 headers."""
    entries = []
    for meta in sorted(source.root.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"), headersonly=True)
        content_type, name = headers.get("Description-Content-Type", ""), headers.get("Name", "")
        lang = "markdown" if "markdown" in content_type else "rst" if "rst" in content_type else "text"
        entries.append(FileEntry(str(meta), f"{source.label}/{meta.relative_to(source.root).as_posix()}",
                                 lang, "prose", name, index.by_dist.get(name, "unknown"), meta.stat().st_size))
    return entries


def _sample(entries: list[FileEntry], budget: int, stats: dict) -> list[FileEntry]:
    """Files in path-hash order until the byte budget is spent: a random but reproducible sample."""
    ranked = sorted(entries, key=lambda e: hashlib.blake2b(e.path.encode(), digest_size=8).digest())
    chosen, total = set(), 0
    for e in ranked:
        if total + e.size <= budget:
            chosen.add(e.path)
            total += e.size
        else:
            _count(stats, "over_byte_budget", e.size)
    return [e for e in entries if e.path in chosen]


# --- per-file work (worker processes) ---------------------------------------------------------------

_worker: dict = {}


def _init_worker(filter_config: filters.FilterConfig, ngram: int) -> None:
    from training.data.decontam import Decontaminator
    _worker["filters"] = filter_config
    _worker["decontam"] = Decontaminator(ngram)


def _process_chunk(chunk: list[tuple[int, FileEntry]]) -> dict:
    """Read, filter, decontaminate and scrub a chunk of files; hash and sketch the survivors."""
    cfg, decontam = _worker["filters"], _worker["decontam"]
    removed, kept, token_lists, pii_counts = [], [], [], Counter()
    for index, entry in chunk:
        reason = filters.size_check(entry.size, cfg)
        text = None
        if reason is None:
            try:
                text, reason = filters.decode(Path(entry.abspath).read_bytes())
            except OSError:
                reason = "unreadable"
            if text is not None and entry.path.endswith(".dist-info/METADATA"):
                text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
                reason = filters.size_check(len(text), cfg)
        if reason is None:
            reason = filters.check(text, entry.path, entry.lang, entry.kind, cfg)
        tokens = words(text) if reason is None else []
        if reason is None and decontam.is_contaminated(tokens):
            reason = "humaneval_ngram"
        if reason is not None:
            removed.append((index, reason))
            continue
        text, counts = pii.scrub(text)
        pii_counts.update(counts)
        kept.append((index, text, content_hash(text)))
        token_lists.append(tokens)
    return {"removed": removed, "kept": kept, "signatures": signatures(token_lists), "pii": pii_counts}


# --- the driver -----------------------------------------------------------------------------------

def build_corpus(config: CorpusConfig, progress: bool = True) -> dict:
    """Runs the whole stage and returns the stats (also written to `out/stats.json`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    if config.licenses not in ("all", "permissive"):
        raise ValueError(f"--licenses must be 'all' or 'permissive', not {config.licenses!r}")
    start, out = time.time(), Path(config.out)
    outdir.claim(out, "data corpus", WRITES)
    stats = {"sources": [{"label": s.label, "root": str(s.root)} for s in config.sources],
             "non_source": {"files": 0, "bytes": 0}, "removed": {}, "kept": {"files": 0, "bytes": 0},
             "pii": Counter(), "by_license": Counter(), "by_lang": {},
             "splits": {s: {"docs": 0, "code_bytes": 0, "prose_bytes": 0} for s in ("train", "val")},
             "repo_documents": {"packages": 0, "files": 0, "docs": 0}}
    entries = discover(config, stats)
    stats["seen"] = {"files": len(entries), "bytes": sum(e.size for e in entries)}
    entries = _within_budget_and_license(entries, config, stats)

    partial = new_partial(out)
    writer = ShardWriter(partial, config.shard_bytes)

    def emit(split_key: str, row: dict) -> None:
        split = split_of(split_key, config.val_fraction if row["kind"] == "code" else config.prose_val_fraction)
        writer.write(split, row)
        stats["splits"][split]["docs"] += 1
        stats["splits"][split][f"{row['kind']}_bytes"] += len(row["text"].encode("utf-8"))

    dedup = Deduplicator(config.near_dup_threshold)
    repo_files: dict[str, dict[str, tuple[str, str]]] = {}  # package -> {path: (text, license)}
    with Progress(TextColumn("corpus"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("files", total=len(entries))
        for result in _processed(list(_chunks(entries)), config):  # in input order: dedup keeps the first copy
            for index, reason in result["removed"]:
                _count(stats, reason, entries[index].size)
            for (index, text, digest), signature in zip(result["kept"], result["signatures"]):
                e = entries[index]
                reason = dedup.check(digest, signature)
                if reason is not None:
                    _count(stats, reason, e.size)
                    continue
                _tally_kept(stats, e)
                if e.lang == "python" and e.path.endswith(".py") and repo_docs.is_selected(e.package, config.repo_fraction):
                    repo_files.setdefault(e.package, {})[e.path] = (text, e.license)
                else:
                    emit(e.path, {"path": e.path, "lang": e.lang, "kind": e.kind, "license": e.license, "text": text})
            stats["pii"].update(result["pii"])
            bar.advance(task, len(result["removed"]) + len(result["kept"]))
    _emit_repo_documents(repo_files, config, stats, emit)
    writer.close()

    stats["wall_seconds"] = round(time.time() - start, 1)
    stats["config"] = {k: v for k, v in asdict(config).items() if k not in ("sources", "out")}
    (partial / STATS).write_text(json.dumps(stats, indent=2, default=str))
    replace_files(partial, out, STATS, SHARDS)
    return json.loads((out / STATS).read_text())


def _within_budget_and_license(entries: list[FileEntry], config: CorpusConfig, stats: dict) -> list[FileEntry]:
    if config.max_bytes is not None and sum(e.size for e in entries) > config.max_bytes:
        entries = _sample(entries, config.max_bytes, stats)
    if config.licenses == "permissive":
        for e in entries:
            if not licenses.is_permissive(e.license):
                _count(stats, "license_not_permissive", e.size)
        entries = [e for e in entries if licenses.is_permissive(e.license)]
    return entries


def _chunks(entries: list[FileEntry], max_files: int = 256, max_bytes: int = 4 << 20):
    chunk, size = [], 0
    for item in enumerate(entries):
        chunk.append(item)
        size += item[1].size
        if len(chunk) >= max_files or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _processed(chunks: list, config: CorpusConfig):
    """`_process_chunk` of every chunk, in order: in a spawn process pool (safe in a process that has
    threads, such as one that imported JAX), or inline for one worker."""
    initargs = (config.quality, config.decontam_ngram)
    if config.workers <= 1:
        _init_worker(*initargs)
        yield from map(_process_chunk, chunks)
        return
    pool = ProcessPoolExecutor(config.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=initargs)
    try:
        yield from pool.map(_process_chunk, chunks)
    finally:
        pool.shutdown(cancel_futures=True)


def _emit_repo_documents(repo_files: dict, config: CorpusConfig, stats: dict, emit) -> None:
    for package in sorted(repo_files):
        files = repo_files[package]
        if len(files) < 2:  # a lone module is an ordinary document
            for path, (text, lic) in files.items():
                emit(path, {"path": path, "lang": "python", "kind": "code", "license": lic, "text": text})
            continue
        lic = next(iter(files.values()))[1]
        docs = repo_docs.repo_documents({p: t for p, (t, _) in files.items()}, config.repo_max_chars)
        stats["repo_documents"]["packages"] += 1
        stats["repo_documents"]["files"] += len(files)
        stats["repo_documents"]["docs"] += len(docs)
        for doc in docs:  # the whole package lands in one split: no file of it leaks into the other
            emit(f"repo:{package}", {"path": f"{package}/", "lang": "python", "kind": "code", "license": lic,
                                      "text": doc})


def _count(stats: dict, reason: str, n_bytes: int) -> None:
    slot = stats["removed"].setdefault(reason, {"files": 0, "bytes": 0})
    slot["files"] += 1
    slot["bytes"] += n_bytes


def _tally_kept(stats: dict, e: FileEntry) -> None:
    stats["kept"]["files"] += 1
    stats["kept"]["bytes"] += e.size
    stats["by_license"][e.license] += 1
    lang = stats["by_lang"].setdefault(e.lang, {"files": 0, "bytes": 0})
    lang["files"] += 1
    lang["bytes"] += e.size


def print_stats(stats: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    mb = lambda b: f"{b / 1e6:,.1f}"
    table = Table(title="corpus", show_footer=False)
    table.add_column("step")
    table.add_column("files", justify="right")
    table.add_column("MB", justify="right")
    table.add_row("not source (skipped)", f"{stats['non_source']['files']:,}", mb(stats["non_source"]["bytes"]),
                  style="dim")
    table.add_row("seen (source files)", f"{stats['seen']['files']:,}", mb(stats["seen"]["bytes"]))
    for reason, slot in sorted(stats["removed"].items(), key=lambda kv: -kv[1]["bytes"]):
        table.add_row(f"  removed: {reason}", f"{slot['files']:,}", mb(slot["bytes"]))
    table.add_row("kept", f"{stats['kept']['files']:,}", mb(stats["kept"]["bytes"]), style="bold")
    console.print(table)
    splits = Table(title="documents")
    for col in ("split", "docs", "code MB", "prose MB"):
        splits.add_column(col, justify="right" if col != "split" else "left")
    for name, s in stats["splits"].items():
        splits.add_row(name, f"{s['docs']:,}", mb(s["code_bytes"]), mb(s["prose_bytes"]))
    console.print(splits)
    langs = ", ".join(f"{k} {v['files']:,}" for k, v in sorted(stats["by_lang"].items(), key=lambda kv: -kv[1]["files"]))
    lics = ", ".join(f"{k} {v:,}" for k, v in sorted(stats["by_license"].items(), key=lambda kv: -kv[1]))
    console.print(f"languages (files): {langs}")
    console.print(f"licenses (files): {lics}")
    console.print(f"PII replaced: {dict(stats['pii'])}; repository documents: {stats['repo_documents']}; "
                  f"{stats['wall_seconds']} s")


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    from nanocode.lookup import nanocode_home
    if a.only_src and not a.src:
        return common.fail("--only-src needs at least one --src DIR")
    if not 0 <= a.val_fraction < 1 or not 0 <= a.repo_fraction <= 1:
        return common.fail("--val-fraction must be in [0, 1) and --repo-fraction in [0, 1]")
    out = (a.out or nanocode_home() / "data" / "corpus").expanduser().resolve()
    if out == Path.cwd().resolve():
        return common.fail(f"--out {a.out} is the directory you are in; name a directory for the corpus, e.g. "
                           "--out data/corpus")
    for src in a.src or []:
        if src.expanduser().resolve().is_relative_to(out):
            return common.fail(f"--out {out} contains --src {src}; write the corpus somewhere else")
    try:
        sources = ([] if a.only_src else default_sources()) + directory_sources(a.src or [])
        config = CorpusConfig(sources=tuple(sources), out=out,
                              licenses=a.licenses, repo_fraction=a.repo_fraction, val_fraction=a.val_fraction,
                              prose_val_fraction=min(0.5, 10 * a.val_fraction), max_bytes=a.max_bytes,
                              workers=a.workers or os.cpu_count() or 1)
        stats = build_corpus(config)
    except (FileNotFoundError, ValueError, common.StageError) as e:
        return common.fail(e)
    print_stats(stats)
    print(f"corpus written to {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
