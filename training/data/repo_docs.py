"""Repository-level documents: the Python files of one package concatenated in import-dependency order,
each behind a `# file: <path>` header, so the model sees `utils.py` before the `import utils` that
uses it and learns that the names refer to code it has read (the repo-level ordering of DeepSeek-Coder
and StarCoder2). An import cycle is broken at the waiting file that misses the fewest imports (ties by
path), so the order is deterministic.
"""
import ast
import hashlib
import heapq

HEADER = "# file: {path}\n"


def is_selected(package: str, fraction: float) -> bool:
    """Deterministic choice of the packages that become repository documents (by name hash)."""
    digest = hashlib.blake2b(f"repo:{package}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(text: str, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names a file imports; `from . import x` is resolved against `module`."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []  # a file this interpreter cannot parse still goes in, just without known deps
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:  # `from . import x` needs x, not the package's __init__ (which needs x: a cycle)
                names.append(target)
            names += [f"{target}.{alias.name}" if target else alias.name for alias in node.names]
    return [n for n in names if n]


def dependency_order(files: dict[str, str]) -> list[str]:
    """Paths of `files` ({path: text}) with every file after the files it imports."""
    # Index each file under every dotted suffix of its path, so `import utils` from a script directory
    # and `import pkg.utils` from a src/ layout both find `src/pkg/utils.py`.
    index: dict[str, list[str]] = {}
    for path in sorted(files):
        parts = module_name(path).split(".")
        for i in range(len(parts)):
            index.setdefault(".".join(parts[i:]), []).append(path)

    def resolve(name: str, importer: str) -> str | None:
        candidates = index.get(name)
        if not candidates:
            return None
        directory = importer.rsplit("/", 1)[0]
        return min(candidates, key=lambda p: (p.rsplit("/", 1)[0] != directory, len(p), p))

    deps: dict[str, set[str]] = {}
    for path, text in files.items():
        found = (resolve(name, path) for name in
                 imported_modules(text, module_name(path), path.endswith("__init__.py")))
        deps[path] = {p for p in found if p and p != path}

    users: dict[str, list[str]] = {p: [] for p in files}
    for path, needed in deps.items():
        for dep in needed:
            users[dep].append(path)
    waiting = {p: len(d) for p, d in deps.items()}
    ready = [p for p, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while len(order) < len(files):
        if not ready:  # a cycle: release the file missing the fewest imports (then by path)
            cycle_break = min((n, p) for p, n in waiting.items() if n > 0)[1]
            waiting[cycle_break] = 0
            ready.append(cycle_break)
        path = heapq.heappop(ready)
        if waiting.get(path) == -1:
            continue
        waiting[path] = -1
        order.append(path)
        for user in users[path]:
            if waiting[user] > 0:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, user)
    return order


def repo_documents(files: dict[str, str], max_chars: int) -> list[str]:
    """The package as documents of at most `max_chars` (split at file boundaries; one bigger file is
    a document of its own), files in dependency order, each behind its path header."""
    docs, current = [], ""
    for path in dependency_order(files):
        piece = HEADER.format(path=path) + files[path].rstrip("\n") + "\n\n"
        if current and len(current) + len(piece) > max_chars:
            docs.append(current)
            current = ""
        current += piece
    if current:
        docs.append(current)
    return docs
