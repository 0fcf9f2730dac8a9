"""Where synthetic tasks get their code: Python files from the corpus (or a directory), what `ast` can
tell about them (functions, docstrings, defaults, constants), and workspaces built from them.

A workspace is described by data, not by side effects: `WorkspaceSpec` = files (workspace path -> text)
plus planted edits (path, old, new) applied in order. Every conversation stores the spec's recipe in its
meta, so a test (or a curious reader) can rebuild the exact starting state and re-run the tool calls.
"""
import ast
import hashlib
import keyword
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

MIN_BYTES, MAX_BYTES = 200, 60_000  # tiny files have nothing to find; huge ones make slow, long results
SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", "node_modules", ".venv", "venv", ".tox", ".mypy_cache",
             ".pytest_cache", "build", "dist", "site-packages", "dist-packages"}


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class SourceFile:
    key: str    # where it came from: the corpus path (`stdlib/json/decoder.py`) or the path under --src
    text: str

    @cached_property
    def info(self) -> "ModuleInfo | None":
        return analyze(self.text)

    @property
    def rel(self) -> str:
        """Its path inside a workspace: the last two components of the key (`json/decoder.py`)."""
        parts = [p for p in self.key.split("/") if p]
        return "/".join(parts[-2:])


def _usable(text: str) -> bool:
    # CRLF and tabs-for-indentation files would work with the tools, but the planted edits and the
    # line-based templates below assume LF and spaces; there are plenty of files without them.
    return MIN_BYTES <= len(text.encode("utf-8")) <= MAX_BYTES and "\r" not in text and "\t" not in text \
        and "\x00" not in text


def split_of(key: str, val_fraction: float) -> str:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") < val_fraction * 2**64 else "train"


@dataclass
class Pool:
    """Source files by split: validation conversations are made from files that no training one uses."""
    train: list[SourceFile]
    val: list[SourceFile]

    def split(self, name: str) -> list[SourceFile]:
        return self.val if name == "val" else self.train


def _files_from_dir(src: Path) -> list[SourceFile]:
    out = []
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = Path(root) / name
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            out.append(SourceFile(path.relative_to(src).as_posix(), text))
    return out


def _files_from_corpus(corpus: Path) -> tuple[list[SourceFile], list[SourceFile]]:
    from training.data.corpus import read_documents
    splits = {}
    for split in ("train", "val"):
        rows = []
        for row in read_documents(corpus, split, columns=("path", "lang", "kind", "text")):
            if row["lang"] == "python" and row["kind"] == "code" and not row["path"].endswith("/"):
                rows.append(SourceFile(row["path"], row["text"]))
        splits[split] = rows
    return splits["train"], splits["val"]


def _sample(files: list[SourceFile], n: int) -> list[SourceFile]:
    """A deterministic sample of n files (by key hash), so the pool does not depend on the input order."""
    if len(files) <= n:
        return files
    return sorted(files, key=lambda f: hashlib.blake2b(f.key.encode(), digest_size=8).digest())[:n]


def load_pool(corpus: Path | None = None, src: Path | None = None, val_fraction: float = 0.05,
              max_files: int = 6000) -> Pool:
    """Python files usable for tasks. From a corpus the split is the corpus's own (a val file was never
    pretrained on); from --src it is a hash of the path. An empty side borrows alternate files, so a tiny
    directory still yields both splits."""
    if (corpus is None) == (src is None):
        raise SourceError("give exactly one of --corpus DIR (a `nanocode data corpus` output) or --src DIR "
                          "(a directory of Python files)")
    if corpus is not None:
        train, val = _files_from_corpus(Path(corpus))
    else:
        src = Path(src)
        if not src.is_dir():
            raise SourceError(f"--src {src} is not a directory; point it at a folder of Python files")
        files = _files_from_dir(src)
        train = [f for f in files if split_of(f.key, val_fraction) == "train"]
        val = [f for f in files if split_of(f.key, val_fraction) == "val"]
    # Only cheap checks here: parsing happens lazily (SourceFile.info), in the worker that uses the file.
    train = [f for f in train if _usable(f.text)]
    val = [f for f in val if _usable(f.text)]
    if not val or not train:
        both = sorted(train + val, key=lambda f: f.key)
        train, val = both[::2] or both, both[1::2] or both
    train = _sample(train, max_files)
    val = _sample(val, max(1, int(max_files * max(val_fraction, 0.05))))
    if not any(f.info is not None and f.info.functions for f in train[:200] + val[:50]):
        where = corpus if corpus is not None else src
        raise SourceError(f"no usable Python files in {where}: tasks need parseable files of "
                          f"{MIN_BYTES}-{MAX_BYTES} bytes (LF line ends, spaces) with at least one function")
    return Pool(train, val)


# --- what ast tells us about a file ---------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    default: str | None   # source text of the default, None when it has none
    kind: str             # positional | kwonly | vararg | kwarg


@dataclass(frozen=True)
class Function:
    name: str
    cls: str | None         # enclosing class, None for a top-level function
    lineno: int             # the `def` line (1-based; decorators come before it)
    end_lineno: int
    def_end: int            # last line of the signature
    body_start: int         # first line of the body after the docstring (== doc line when only a docstring)
    doc: str                # cleaned docstring ('' when none)
    doc_end: int            # last line of the docstring (0 when none)
    params: tuple[Param, ...]
    returns: tuple[str, ...]   # source of each `return <expr>` (short ones only)
    raises: tuple[str, ...]    # exception names raised directly
    calls: tuple[str, ...]     # names of functions called (plain names, in order, unique)
    self_contained: bool       # top-level, uses only its params, locals and safe builtins: runnable alone
    is_async: bool
    has_yield: bool

    @property
    def qualname(self) -> str:
        return f"{self.cls}.{self.name}" if self.cls else self.name

    @property
    def n_lines(self) -> int:
        return self.end_lineno - self.lineno + 1


@dataclass(frozen=True)
class Constant:
    name: str
    lineno: int
    value: object


@dataclass
class ModuleInfo:
    lines: list[str]                      # with their line ends
    functions: list[Function] = field(default_factory=list)
    classes: dict[str, int] = field(default_factory=dict)   # class name -> line
    constants: list[Constant] = field(default_factory=list)

    def line(self, n: int) -> str:
        return self.lines[n - 1].rstrip("\n")

    def segment(self, a: int, b: int) -> str:
        return "".join(self.lines[a - 1:b])


SAFE_BUILTINS = {
    "abs", "all", "any", "bin", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "hex", "int", "isinstance", "len", "list", "map", "max", "min", "oct", "ord", "pow",
    "range", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip", "ValueError",
    "TypeError", "KeyError", "IndexError", "ZeroDivisionError", "True", "False", "None", "NotImplemented",
}


def _docstring_span(node) -> tuple[str, int]:
    if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
            and isinstance(node.body[0].value.value, str):
        return ast.get_docstring(node) or "", node.body[0].end_lineno
    return "", 0


def _params(a: ast.arguments, seg) -> tuple[Param, ...]:
    out = []
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    out += [Param(p.arg, seg(d) if d is not None else None, "positional") for p, d in zip(pos, defaults)]
    if a.vararg:
        out.append(Param(a.vararg.arg, None, "vararg"))
    out += [Param(p.arg, seg(d) if d is not None else None, "kwonly") for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append(Param(a.kwarg.arg, None, "kwarg"))
    return tuple(out)


def _self_contained(node, params: tuple[Param, ...]) -> bool:
    """Runnable on its own: only its parameters, its own locals and SAFE_BUILTINS; no I/O, no globals."""
    local = {p.name for p in params}
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Global, ast.Nonlocal, ast.Yield, ast.YieldFrom, ast.Await, ast.Lambda,
                            ast.Import, ast.ImportFrom, ast.ClassDef)):
            return False
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            local.add(sub.id)
        elif isinstance(sub, ast.arg):
            local.add(sub.arg)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and sub is not node:
            return False
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in local \
                and sub.id not in SAFE_BUILTINS:
            return False
        if isinstance(sub, ast.Attribute) and sub.attr.startswith("__"):
            return False
    return not node.decorator_list


def analyze(text: str) -> ModuleInfo | None:
    """Functions, classes and module constants of a Python source; None if it does not parse here."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    info = ModuleInfo(text.splitlines(keepends=True))
    raw = [line.encode("utf-8") for line in info.lines]

    def seg(n) -> str:
        """ast.get_source_segment, without re-splitting the whole file on every call (it does: O(file))."""
        a, b = n.lineno - 1, n.end_lineno - 1
        if a == b:
            return raw[a][n.col_offset:n.end_col_offset].decode("utf-8", "replace")
        parts = [raw[a][n.col_offset:], *raw[a + 1:b], raw[b][:n.end_col_offset]]
        return b"".join(parts).decode("utf-8", "replace")

    def visit_function(node, cls):
        doc, doc_end = _docstring_span(node)
        params = _params(node.args, seg)
        body = node.body[1:] if doc_end else node.body
        returns, raises, calls, has_yield = [], [], [], False
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Yield, ast.YieldFrom)):
                has_yield = True
            elif isinstance(sub, ast.Return) and sub.value is not None:
                s = seg(sub.value)
                if len(s) <= 40 and "\n" not in s:
                    returns.append(s)
            elif isinstance(sub, ast.Raise) and sub.exc is not None:
                exc = sub.exc.func if isinstance(sub.exc, ast.Call) else sub.exc
                if isinstance(exc, ast.Name) and exc.id not in raises:
                    raises.append(exc.id)
            elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id not in calls:
                calls.append(sub.func.id)
        info.functions.append(Function(
            name=node.name, cls=cls, lineno=node.lineno, end_lineno=node.end_lineno,
            def_end=node.body[0].lineno - 1 if node.body[0].lineno > node.lineno else node.lineno,
            body_start=body[0].lineno if body else doc_end, doc=doc, doc_end=doc_end, params=params,
            returns=tuple(returns), raises=tuple(raises), calls=tuple(calls),
            self_contained=cls is None and _self_contained(node, params),
            is_async=isinstance(node, ast.AsyncFunctionDef),
            has_yield=has_yield))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit_function(node, None)
        elif isinstance(node, ast.ClassDef):
            info.classes[node.name] = node.lineno
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit_function(sub, node.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Constant) and node.lineno == node.end_lineno:
            name, value = node.targets[0].id, node.value.value
            if name.isupper() and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                info.constants.append(Constant(name, node.lineno, value))
    return info


def is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def module_file_name(stem: str) -> str:
    """A file name for a module we write ourselves that cannot shadow the standard library when the
    workspace is on sys.path (`python -c "from x import f"` runs with the workspace first)."""
    stem = re.sub(r"\W", "_", stem).strip("_").lower() or "helpers"
    if stem in sys.stdlib_module_names or stem in ("test", "tests", "conftest") or stem[0].isdigit():
        stem = f"my_{stem}"
    return f"{stem}.py"


# --- workspaces -----------------------------------------------------------------------------------

@dataclass
class WorkspaceSpec:
    files: dict[str, str] = field(default_factory=dict)             # workspace path -> text
    sources: dict[str, str] = field(default_factory=dict)           # workspace path -> source key it copies
    edits: list[tuple[str, str, str]] = field(default_factory=list)  # planted changes: (path, old, new)

    def add(self, f: SourceFile, rel: str | None = None) -> str:
        rel = rel or f.rel
        self.files[rel] = f.text
        self.sources[rel] = f.key
        return rel

    def plant(self, rel: str, old: str, new: str) -> None:
        """Change the starting state (stub a function, plant a bug, add a test file). old='' writes new."""
        if old:
            text = self.files[rel]
            if text.count(old) != 1:
                raise SourceError(f"planted edit in {rel} must match once, matches {text.count(old)} times")
            self.files[rel] = text.replace(old, new, 1)
        else:
            self.files[rel] = new
        self.edits.append((rel, old, new))

    def text(self, rel: str) -> str:
        return self.files[rel]

    def build(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        for rel, text in self.files.items():
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return dest

    def recipe(self) -> dict:
        """JSON-able: how to rebuild this workspace from the source pool (see `rebuild`)."""
        return {"sources": dict(self.sources), "edits": [list(e) for e in self.edits]}


def rebuild(recipe: dict, texts: dict[str, str], dest: Path) -> Path:
    """The starting workspace of a stored conversation: source copies (texts: key -> text), then the
    planted edits in order (files we wrote ourselves are edits with an empty `old`)."""
    spec = WorkspaceSpec()
    for rel, key in recipe["sources"].items():
        if key not in texts:
            raise SourceError(f"source {key!r} of this conversation is not in the pool given to rebuild()")
        spec.files[rel] = texts[key]
    for rel, old, new in recipe["edits"]:
        spec.plant(rel, old, new)
    return spec.build(dest)
