"""`nanocode data synth`: synthetic tool-use conversations, critiqued against SOUL.md, plus DPO pairs.

For each example: pick a task family, make a task from a real source file, and run its scripted teacher
in a fresh workspace through the real tools. Then the Constitutional-AI step: every draft is scored by
the critic (training/critic.py). A draft written with a seeded fault (shouting, a sycophantic opener,
rambling, unrequested extra work, a malformed call, ...; voice.FAULTS) breaks a rule, is revised (the
same script without the fault, in a fresh workspace: the tool results are real again), and
(draft, revision) becomes a preference pair. The SFT data holds only drafts and revisions that keep every
rule. With --generator-url the prose is written by a larger model instead (llm.py), and its drafts
go through the same critique/revision loop; with --critic-url that model also judges.

Outputs, in --out (default $NANOCODE_HOME/data/synth):
    train.jsonl, val.jsonl             {"messages": [...], "meta": {family, variant, source, allowed_paths,
                                        workspace: the recipe to rebuild the starting workspace, notes: the
                                        AGENTS.md text the prompt starts with (a fifth of them, notes.py)}}
    pairs_train.jsonl, pairs_val.jsonl {"messages": prompt, "chosen": msg, "rejected": msg, "meta": {fault,
                                        violations, ...}}
    stats.json                         counts per family, fault, rule; `requests`: the share of distinct first
                                        requests (target >= 0.95) and with backticks (<= 0.50), follow-ups,
                                        phrasing patterns, conversations without a call, the first tool;
                                        written last (marks completion)
Validation examples are made from source files that no training example uses (sources.Pool), and every
conversation sharing a 13-word n-gram with a HumanEval problem is dropped (training/data/decontam.py).
"""
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from training import outdir
from training.critic import critique
from training.synth import (bugfix, change, chat, count, create, delete, docstring, errors, explain, explore,
                             followup, locate, notes, phrasing, read, recover, reject, renames, run, testing, usages,
                             values, voice, write)
from training.synth.episode import Episode, Skip
from training.synth.sources import Pool, load_pool, split_of
from training.synth.tasks import Task

# Family weights: the core loop (find, read, edit) dominates, as it does in use; every kind of request a
# new user tried in issue 15 (read a file, what does this project do, create a program, run the tests, a
# greeting) has a family of its own. delete and renames weigh more since the model shipped on 2026-12-04
# failed every such eval task after 1,413 / 1,821 of its 50,000 conversations (a delete with no new_string,
# a rename that grepped the new name). Measured mix and throughput: training/LOG.md.
FAMILIES = [(locate, 8), (explain, 8), (write, 5), (change, 9), (bugfix, 4), (run, 4), (errors, 5),
            (reject, 5), (followup, 5),
            (read, 8), (explore, 6), (count, 4), (usages, 5), (testing, 7), (create, 6), (docstring, 3),
            (delete, 5), (renames, 6), (chat, 5), (recover, 7), (values, 4)]
GENERIC_FAULTS = voice.PROSE_FAULTS + ("malformed", "extra_work")
MAX_ATTEMPTS = 40  # tasks tried per example before giving up (most failures are cheap: no suitable target)
FAMILY_TRIES = 8   # attempts with one family before drawing another


@dataclass(frozen=True)
class SynthConfig:
    out: Path
    corpus: Path | None = None
    src: Path | None = None
    n: int = 2000                 # conversations (train + val)
    seed: int = 0
    val_fraction: float = 0.05
    fault_rate: float = 0.6       # share of examples whose first draft gets a seeded fault
    workers: int = 0              # 0: all cores
    max_files: int = 6000
    generator_url: str | None = None
    critic_url: str | None = None
    llm_model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"


# --- one example ----------------------------------------------------------------------------------

_POOL: Pool | None = None
_CFG: SynthConfig | None = None
_DECONTAM = None
_LLM = None


def _init_worker(pool: Pool, cfg: SynthConfig) -> None:
    global _POOL, _CFG, _DECONTAM, _LLM
    from training.data.decontam import Decontaminator
    _POOL, _CFG, _DECONTAM = pool, cfg, Decontaminator()
    os.environ.update(testing.ENV)  # the Bash calls of the test families run pytest without this machine's plugins
    if cfg.generator_url or cfg.critic_url:
        from training.synth.llm import Writer
        _LLM = Writer.from_config(cfg)


def play(task: Task, seed: int, fault: str | None = None) -> list[dict]:
    """Runs the task's script in a fresh copy of its workspace; returns the conversation."""
    with tempfile.TemporaryDirectory(prefix="nanocode-synth-") as tmp:
        ws = task.spec.build(Path(tmp))
        ep = Episode(ws, random.Random(seed), fault=fault, fault_turn=task.turns - 1,
                     fault_rng=random.Random(seed ^ 0x5EED), allowed_paths=task.allowed_paths)
        task.script(ep)
        return ep.conversation()


def conversation_words(messages: list[dict]) -> list[str]:
    from training.data.dedup import words
    chunks = []
    for m in messages:
        if isinstance(m["content"], str):
            chunks.append(m["content"])
            continue
        for p in m["content"]:
            chunks += [p.get("text", ""), p.get("output", ""), *p.get("args", {}).values()]
    return words("\n".join(chunks))


def last_assistant(messages: list[dict]) -> int:
    return max(i for i, m in enumerate(messages) if m["role"] == "assistant")


def _pick_family(rng: random.Random):
    mods, weights = zip(*FAMILIES)
    return rng.choices(mods, weights)[0]


def generate_one(index: int) -> dict:
    """One example: {"split", "conversation" or None, "pair" or None, "events": Counter of what happened}."""
    cfg, pool = _CFG, _POOL
    split = split_of(f"synth:{cfg.seed}:{index}", cfg.val_fraction)
    files = pool.split(split)
    rng = random.Random(f"{cfg.seed}:{index}")
    ev = Counter()
    for attempt in range(MAX_ATTEMPTS):
        # A family keeps its turn for a few attempts: redrawing after every miss starved the ones whose tasks
        # often do not fit a file (testing got 29 of 3,000 conversations for a 6% weight).
        if attempt % FAMILY_TRIES == 0:
            fam = _pick_family(rng)
        try:
            task = fam.make(files, rng)
        except Skip:
            task = None
        if task is None:
            ev[f"no_task/{fam.NAME}"] += 1
            continue
        seed = rng.getrandbits(62)
        try:
            revision = play(task, seed)
        except Skip:
            ev[f"skipped/{fam.NAME}"] += 1
            continue
        meta = {"allowed_paths": task.allowed_paths}
        broken = critique({"messages": revision, "meta": meta})
        if broken:  # the teacher itself broke a rule (e.g. a docstring word the critic reads as shouting)
            for v in broken:
                ev[f"teacher_violation/{v.rule}"] += 1
            continue
        if _DECONTAM.is_contaminated(conversation_words(revision)):
            ev["decontaminated"] += 1
            continue
        break
    else:
        ev["gave_up"] += 1
        return {"split": split, "conversation": None, "pair": None, "events": ev}

    meta = {"family": task.family, "variant": task.tags.get("variant", ""), "pattern": task.tags.get("pattern", ""),
            "source": task.key,
            "allowed_paths": task.allowed_paths, "index": index, "seed": cfg.seed,
            "workspace": task.spec.recipe()}
    if rng.random() < notes.SHARE:
        meta["notes"] = notes.project_notes(rng)
        ev["with_notes"] += 1
    final, pair = revision, None
    k = last_assistant(revision)

    if _LLM is not None and _LLM.generates:
        from training.synth.llm import LLMError
        try:
            final, pair = _llm_round(revision, k, meta, ev)
        except LLMError as e:  # a flaky endpoint costs this example its rewrite, not the whole run
            ev["llm/error"] += 1
            ev[f"llm_error/{str(e)[:120]}"] += 1

    if pair is None and rng.random() < cfg.fault_rate:
        faults = list(GENERIC_FAULTS)
        rng.shuffle(faults)
        # A family's own faults (pushy after a rejection, denying a failure, a made-up line number) are
        # what that family exists to teach: try them first half of the time, not 1 in 11.
        faults = list(task.faults) + faults if rng.random() < 0.5 else faults + list(task.faults)
        for fault in faults[:4]:
            try:
                draft = play(task, seed, fault)
            except Skip:
                ev[f"fault_not_applicable/{fault}"] += 1
                continue
            if draft == revision:  # e.g. `malformed` in a turn without tool calls: nothing to seed
                ev[f"fault_not_applicable/{fault}"] += 1
                continue
            if draft[:k] != final[:k]:
                ev["draft_prefix_mismatch"] += 1
                continue
            ev[f"seeded/{fault}"] += 1
            found = critique({"messages": draft, "meta": meta}) + _model_judge(draft, k, ev)
            if not found:  # the critic missed it: never train on a degraded draft either way
                ev[f"missed/{fault}"] += 1
                break
            rules = sorted({v.rule for v in found})
            ev[f"caught/{fault}"] += 1
            ev[f"caught_expected/{fault}"] += voice.FAULTS[fault] in rules
            pair = {"messages": final[:k], "chosen": final[k], "rejected": draft[k],
                    "meta": {**meta, "fault": fault, "violations": rules}}
            break
    ev[f"family/{task.family}"] += 1
    return {"split": split, "conversation": {"messages": final, "meta": meta}, "pair": pair, "events": ev}


def _model_judge(messages: list[dict], k: int, ev: Counter) -> list:
    """The --critic-url model's violations of turn k ([] without one, or when it fails: the rules decide)."""
    if _LLM is None or not _LLM.judges:
        return []
    from training.synth.llm import LLMError
    try:
        found = _LLM.judge(messages[:k], messages[k])
    except LLMError:
        ev["llm/judge_error"] += 1
        return []
    ev["llm/judged"] += 1
    ev["llm/judge_flagged"] += bool(found)
    return found


def _llm_round(revision: list[dict], k: int, meta: dict, ev: Counter):
    """The larger model rewrites the teacher's prose (tool calls and results stay real), the critic judges,
    the model revises what broke a rule; a draft that still breaks one falls back to the teacher's text."""
    draft = _LLM.rewrite(revision)
    found = critique({"messages": draft, "meta": meta}) + _model_judge(draft, k, ev)
    if not found:
        ev["llm/accepted"] += 1
        return draft, None
    ev["llm/revised"] += 1
    fixed = _LLM.revise(draft, found)
    again = critique({"messages": fixed, "meta": meta})
    final = fixed if not again else revision
    ev["llm/revision_kept" if not again else "llm/fallback_to_teacher"] += 1
    rules = sorted({v.rule for v in found})
    if draft[:k] != final[:k]:
        return final, None
    return final, {"messages": final[:k], "chosen": final[k], "rejected": draft[k],
                   "meta": {**meta, "fault": "llm_draft", "violations": rules}}


# --- the whole run --------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def synth(cfg: SynthConfig, progress=None) -> dict:
    """Generates cfg.n examples in parallel and writes the output files. Returns the stats."""
    if cfg.n < 1:
        raise ValueError(f"--n must be at least 1, got {cfg.n}")
    if not 0 <= cfg.fault_rate <= 1 or not 0 <= cfg.val_fraction < 1:
        raise ValueError("--fault-rate must be in [0, 1] and --val-fraction in [0, 1)")
    if shutil.which("python") is None:
        raise RuntimeError("the Bash tasks run `python ...` in the workspace, but there is no `python` on PATH; "
                           "activate the environment (or link python3 to python) and run again")
    t0 = time.time()
    pool = load_pool(cfg.corpus, cfg.src, cfg.val_fraction, cfg.max_files)
    workers = cfg.workers or os.cpu_count() or 1
    stats_path = Path(cfg.out) / "stats.json"
    outdir.claim(cfg.out, "data synth", ("stats.json", "train.jsonl", "val.jsonl", "pairs_*.jsonl", "*.jsonl.tmp"))
    stats_path.unlink(missing_ok=True)  # a stale stats.json would mark a half-written run as complete
    results: list[dict] = []
    if workers == 1:
        saved = {k: os.environ.get(k) for k in testing.ENV}
        _init_worker(pool, cfg)
        try:
            for i in range(cfg.n):
                results.append(generate_one(i))
                if progress:
                    progress(i + 1, cfg.n)
        finally:  # this process is the caller's: leave its environment as it was
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        # fork shares the loaded pool with the workers for free; but forking a process in which JAX already
        # runs its threads can deadlock the child, so then (and on macOS/Windows) spawn, which pickles the
        # pool once per worker
        safe_to_fork = "fork" in get_all_start_methods() and "jax" not in sys.modules
        ctx = get_context("fork" if safe_to_fork else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(pool, cfg)) as ex:
            for i, r in enumerate(ex.map(generate_one, range(cfg.n), chunksize=8)):
                results.append(r)
                if progress:
                    progress(i + 1, cfg.n)

    out = {(kind, split): [] for kind in ("conv", "pair") for split in ("train", "val")}
    events = Counter()
    for r in results:
        events.update(r["events"])
        if r["conversation"] is not None:
            out[("conv", r["split"])].append(r["conversation"])
        if r["pair"] is not None:
            out[("pair", r["split"])].append(r["pair"])
    o = Path(cfg.out)
    _write_jsonl(o / "train.jsonl", out[("conv", "train")])
    _write_jsonl(o / "val.jsonl", out[("conv", "val")])
    _write_jsonl(o / "pairs_train.jsonl", out[("pair", "train")])
    _write_jsonl(o / "pairs_val.jsonl", out[("pair", "val")])
    convs = out[("conv", "train")] + out[("conv", "val")]
    requests = phrasing.diversity([c["messages"][0]["content"] for c in convs])
    later = [m["content"] for c in convs for m in c["messages"][2::2]]
    requests |= {"followups": len(later), "followups_distinct_share": round(len(set(later)) / len(later), 4) if later else None,
                 "patterns": len({c["meta"]["pattern"] for c in convs if c["meta"]["pattern"]}),
                 "without_tool_calls": sum(all(p["type"] == "text" for m in c["messages"][1::2] for p in m["content"])
                                           for c in convs),
                 "first_call": dict(Counter(_first_call(c["messages"]) for c in convs).most_common())}
    grouped = defaultdict(dict)
    for key, n_events in sorted(events.items()):
        head, _, tail = key.partition("/")
        if tail:
            grouped[head][tail] = n_events
        else:
            grouped[head] = n_events
    stats = {"conversations": {s: len(out[("conv", s)]) for s in ("train", "val")},
             "pairs": {s: len(out[("pair", s)]) for s in ("train", "val")},
             "source_files": {"train": len(pool.train), "val": len(pool.val)},
             "seconds": round(time.time() - t0, 1), "workers": workers, "requests": requests,
             "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
             **grouped}
    stats_path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def _first_call(messages: list[dict]) -> str:
    for m in messages[1::2]:
        for p in m["content"]:
            if p["type"] == "tool_call":
                return p["name"]
    return "none"


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `nanocode data synth` first")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
