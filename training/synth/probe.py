"""Running corpus functions to get real facts about them: what they return on a few inputs (for test
files and "what does f(3) give?" tasks) and which small mutations change that (for planted bugs).

Only self-contained functions are probed (sources.Function.self_contained: parameters, locals and a few
pure builtins, no I/O), and always inside training/eval/sandbox.py's subprocess (rlimits, no network, a
throwaway directory), because a corpus function is still code we did not write.
"""
import ast
import itertools
import json
import math
import random
import re
from dataclasses import dataclass

from training.eval.sandbox import Limits, run_python

# Values with no quote, backslash, dollar or backtick: they go into `python -c "..."` shell commands.
INTS = [0, 1, 2, 3, 7, 10, -4, 25]
STRS = ["", "a", "hello", "Hello World", "a,b,c", "  padded  ", "abc123", "x-y-z"]
LISTS = [[], [1, 2, 3], [3, 1, 2], [5, 5, 1, 0], ["b", "a"]]
HINTS = [
    (re.compile(r"^(s|st|text|string|name|word|line|prefix|suffix|sep|char|ch|c|key|label|title|msg|"
                r"message|pattern|fmt|src|source|value_str|ident|token|tag)\d*$|(_?str|_?name|text)$"), STRS),
    (re.compile(r"^(n|k|i|j|m|num|count|size|width|length|x|y|a|b|index|idx|start|stop|end|level|base|"
                r"bits|digits|number|depth|offset|limit|times|step|pos|code)\d*$|(_?count|_?size|_num)$"), INTS),
    (re.compile(r"^(items|lst|seq|values|arr|xs|ys|nums|numbers|data|l|elements|iterable|words|lines|"
                r"parts|args|pairs|list|sequence|collection)\d*$|(_list|s)$"), LISTS),
]
MAX_CALLS = 48
MAX_COMBOS = 4096  # argument combinations enumerated whole; past that, sampled
MAX_REPR = 60


def candidates(param: str) -> list:
    for rx, values in HINTS:
        if rx.search(param):
            return values
    return INTS[:4] + STRS[:4] + LISTS[:3]


@dataclass(frozen=True)
class Probe:
    args: str       # the argument list as Python source: `3, 'abc'`
    result: str     # repr of the return value
    printed: str    # what print(result) writes


@dataclass(frozen=True)
class Mutant:
    line: int       # 1-based line in the function source
    old: str        # that whole line, original
    new: str        # that whole line, mutated
    what: str       # "`<` became `<=`"
    probe: int      # index of a probe whose outcome it changes
    outcome: str    # what the mutant does on that probe: `repr` of the result, or `raises ExcName`


_OPS = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
        ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Add: ("+", "-"), ast.Sub: ("-", "+"),
        ast.And: ("and", "or"), ast.Or: ("or", "and")}


def _between(lines: list[str], a: ast.AST, b: ast.AST) -> tuple[int, int, int] | None:
    """(line, start col, end col) of the text between nodes a and b when both sit on one line."""
    if a.end_lineno != b.lineno or a.end_lineno != getattr(a, "lineno", None):
        return None
    return a.end_lineno, a.end_col_offset, b.col_offset


def mutations(source: str) -> list[tuple[int, str, str, str]]:
    """Single-site mutations of a function's body: (line, old line, new line, description). Each is a
    plausible typo-sized bug: a flipped comparison, + for -, and for or, an off-by-one constant, a swapped
    boolean. Multi-line expressions and the signature (a changed default is a feature, not a bug) are
    skipped; the planted edit is one line."""
    tree = ast.parse(source)
    fn = tree.body[0]
    first_body_line = fn.body[0].lineno
    lines = source.split("\n")
    out, seen = [], set()

    def add(line: int, c0: int, c1: int, old_tok: str, new_tok: str):
        text = lines[line - 1]
        span = text.encode("utf-8")[c0:c1].decode("utf-8", "replace")
        if span.strip() != old_tok:
            return
        i = span.index(old_tok)
        raw = text.encode("utf-8")
        new = (raw[:c0] + (span[:i] + new_tok + span[i + len(old_tok):]).encode("utf-8") + raw[c1:]).decode()
        if (line, new) not in seen:
            seen.add((line, new))
            out.append((line, text, new, f"`{old_tok}` became `{new_tok}`"))

    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) < first_body_line:
            continue
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _OPS:
            old_tok, new_tok = _OPS[type(node.ops[0])]
            where = _between(lines, node.left, node.comparators[0])
            if where:
                add(*where, old_tok, new_tok)
        elif isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            old_tok, new_tok = _OPS[type(node.op)]
            where = _between(lines, node.left, node.right)
            if where:
                add(*where, old_tok, new_tok)
        elif isinstance(node, ast.BoolOp) and len(node.values) == 2:
            old_tok, new_tok = _OPS[type(node.op)]
            where = _between(lines, node.values[0], node.values[1])
            if where:
                add(*where, old_tok, new_tok)
        elif isinstance(node, ast.Constant) and node.lineno == node.end_lineno:
            v = node.value
            if isinstance(v, bool):
                add(node.lineno, node.col_offset, node.end_col_offset, str(v), str(not v))
            elif isinstance(v, int) and 0 <= v <= 100:
                add(node.lineno, node.col_offset, node.end_col_offset, str(v), str(v + 1))
    return out


# The program that runs in the sandbox. It receives everything as JSON and prints one JSON line.
_RUNNER = r'''
import json, signal, sys
spec = json.loads(SPEC)

class Slow(Exception):
    pass

def on_alarm(*_):
    raise Slow()

signal.signal(signal.SIGALRM, on_alarm)

def call(src, name, args_src):
    ns = {}
    exec(compile(src, "<function>", "exec"), ns)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        value = eval(f"__f({args_src})", {"__f": ns[name]})
        return "ok", value
    except Slow:
        return "slow", None
    except BaseException as e:
        return "raises", type(e).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

def plain(v, depth=0):
    if depth > 3:
        return False
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, (str, int)) and plain(x, depth + 1) for k, x in v.items())
    return False

probes = []
for args_src in spec["calls"]:
    status, value = call(spec["source"], spec["name"], args_src)
    if status != "ok" or not plain(value) or len(repr(value)) > spec["max_repr"]:
        continue
    again = call(spec["source"], spec["name"], args_src)
    if again != (status, value) or (isinstance(value, float) and value != value):
        continue  # not deterministic
    probes.append([args_src, repr(value), str(value)])
mutants = []
for i, msrc in enumerate(spec["mutants"]):
    for k, (args_src, want, _) in enumerate(probes):
        status, value = call(msrc, spec["name"], args_src)
        if status == "slow":
            break
        got = repr(value) if status == "ok" else "raises " + value
        if got != want and len(got) <= spec["max_repr"]:
            mutants.append([i, k, got])
            break
print("PROBE-RESULT " + json.dumps({"probes": probes, "mutants": mutants}))
'''


def probe(source: str, name: str, params: list[str], rng: random.Random,
          with_mutants: bool = True) -> tuple[list[Probe], list[Mutant]]:
    """Probes of `name` (defined in `source`, a self-contained function) with distinct results, and the
    mutants that change at least one of them. Empty lists when nothing usable came out."""
    pools = [candidates(p) for p in params]
    if math.prod(len(p) for p in pools) <= MAX_COMBOS:
        combos = list(itertools.product(*pools)) if params else [()]
        rng.shuffle(combos)
    else:  # a function of many parameters: the whole product once took 24 GB and the OOM killer
        combos = [[rng.choice(p) for p in pools] for _ in range(4 * MAX_CALLS)]
    calls = list(dict.fromkeys(", ".join(repr(v) for v in c) for c in combos))[:MAX_CALLS]
    muts = mutations(source) if with_mutants else []
    mutant_sources = []
    for line, _, new, _ in muts:
        lines = source.split("\n")
        lines[line - 1] = new
        mutant_sources.append("\n".join(lines))
    spec = json.dumps({"source": source, "name": name, "calls": calls, "mutants": mutant_sources,
                       "max_repr": MAX_REPR})
    program = f"SPEC = {spec!r}\n" + _RUNNER
    run = run_python(program, Limits(timeout_s=20.0, cpu_s=20, memory_mb=512, output_kb=256))
    m = re.search(r"^PROBE-RESULT (.*)$", run.output, re.MULTILINE)
    if m is None:
        return [], []
    out = json.loads(m.group(1))
    # keep probes with distinct results, so a test or a question is not three times the same answer
    probes, seen = [], set()
    index = {}
    for k, (args, result, printed) in enumerate(out["probes"]):
        if result not in seen:
            index[k] = len(probes)
            seen.add(result)
            probes.append(Probe(args, result, printed))
    mutants = [Mutant(muts[i][0], muts[i][1], muts[i][2], muts[i][3], index[k], got)
               for i, k, got in out["mutants"] if k in index]
    return probes, mutants
