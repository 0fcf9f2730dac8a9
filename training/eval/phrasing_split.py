"""Generalisation to phrasings never trained on: the agent tasks asked with the request generator's seen
patterns and with its held-out ones (training/synth/phrasing.py: a fifth of every intent's templates and of
its openers, closers and context sentences never reach the synth data), on made-up projects and on real
files of the synth pool's validation split (code no training conversation was made from).

    suites = split_suites(per_kind=2, seed=0, src=DIR or corpus=DIR)   {"seen": [...], "unseen": [...]}
    result = evaluate_split(suites, source_for, tok)                   what `nanocode eval agent` reports

The result has, overall and per split, what training/eval/agent.py's evaluate() reports (success overall
and per kind, well-formed calls, steps, repeated identical failed calls); per kind, seen vs unseen; and
the gap. Targets (issue 15): unseen >= 0.80 and within 5 points of seen, repeats <= 2% of turns.
"""
import dataclasses
import random
import tempfile
from pathlib import Path

from training.eval.agent_tasks import ALL_KINDS, AgentTask, Step, make_suite
from training.synth import phrasing

# agent-task kind -> the request generator's intent for it (the task's `slots` fill the template)
INTENTS = {"locate": "locate", "answer": "constant_value", "rename": "rename_all", "edit": "constant",
           "create": "create_program", "run": "run_script", "read": "read_head", "explore": "explore",
           "count": "count_functions", "usages": "find_usages", "test": "run_tests", "fix": "fix_tests",
           "docstring": "add_docstring", "delete": "delete_function", "chat": "capabilities", "typo": "locate"}
# slots the prompt must show, or the task cannot be done (the check wants that file name)
MUST_SHOW = {"create": "file", "read": "file", "count": "file"}


def rephrase(task: AgentTask, split: str, rng: random.Random) -> AgentTask | None:
    """The task asked with a pattern of the split ("seen" or "unseen"); None when no pattern fits."""
    intent = INTENTS[task.kind]
    must = task.slots.get(MUST_SHOW.get(task.kind, ""), None)
    with phrasing.split(split):
        for _ in range(12):
            try:
                req = phrasing.ask(intent, rng, **task.slots)
            except phrasing.NoOption:
                return None
            if must is None or str(must) in req.text:
                return dataclasses.replace(task, id=f"{task.id}/{split}", prompt=req.text, pattern=req.pattern)
    return None


def phrased(tasks: list[AgentTask], split: str, seed: int, keep: bool = False) -> list[AgentTask]:
    """Each task asked with a pattern of the split; one no pattern fits is dropped, or kept as it is."""
    out = []
    for task in tasks:
        t = rephrase(task, split, random.Random(f"{seed}:{split}:{task.id}"))
        if t is not None or keep:
            out.append(t or task)
    return out


def made_up_suites(per_kind: int = 2, seed: int = 0, kinds: tuple[str, ...] = ALL_KINDS) -> dict[str, list[AgentTask]]:
    """The same tasks (same projects, same checks) asked once with seen and once with unseen phrasings."""
    base = make_suite(per_kind, seed, kinds)
    return {split: phrased(base, split, seed) for split in phrasing.SPLITS}


def real_file_suites(per_family: int = 2, seed: int = 0, src: Path | None = None, corpus: Path | None = None,
                     max_files: int = 2000) -> dict[str, list[AgentTask]]:
    """Synth family tasks made from the pool's validation files, with their checks, in both splits.
    Only one-turn tasks the user does not reject (the eval asks one request and approves every call)."""
    from training.synth.driver import FAMILIES, play
    from training.synth.episode import Skip
    from training.synth.sources import load_pool
    pool = load_pool(corpus, src, max_files=max_files)
    out = {s: [] for s in phrasing.SPLITS}
    for fam, _ in FAMILIES:
        for split in phrasing.SPLITS:
            made = 0
            for i in range(40):
                if made >= per_family:
                    break
                rng = random.Random(f"{seed}:{split}:{fam.NAME}:{i}")
                with phrasing.split(split):
                    try:
                        task = fam.make(pool.val, rng)
                    except Skip:
                        continue
                if task is None or task.turns != 1 or task.check is None:
                    continue
                try:
                    conv = play(task, rng.getrandbits(62))
                except Skip:
                    continue
                steps = solution_of(conv)
                if steps is None:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    files = _files(task.spec.build(Path(tmp)))
                out[split].append(AgentTask(f"real-{fam.NAME}-{i}/{split}", f"real:{fam.NAME}", conv[0]["content"],
                                            files, steps, task.check, pattern=task.tags.get("pattern", "")))
                made += 1
    return out


def _files(ws: Path) -> dict[str, str]:
    return {p.relative_to(ws).as_posix(): p.read_text(encoding="utf-8") for p in sorted(ws.rglob("*")) if p.is_file()}


def solution_of(conv: list[dict]) -> tuple[Step, ...] | None:
    """The teacher's calls and final answer as a scripted solution; None if a call was declined."""
    steps, text = [], ""
    for p in conv[1]["content"]:
        if p["type"] == "tool_call":
            steps.append(Step(p["name"], dict(p["args"])))
            text = ""
        elif p["type"] == "tool_result" and p["output"].startswith("the user declined"):
            return None
        elif p["type"] == "text":
            text += p["text"]
    return tuple(steps) + (Step(None, text=text.strip()),)


def split_suites(per_kind: int = 2, seed: int = 0, kinds: tuple[str, ...] = ALL_KINDS, src: Path | None = None,
                 corpus: Path | None = None, per_family: int = 2) -> dict[str, list[AgentTask]]:
    """Made-up projects for every kind, plus real validation files when src or corpus is given."""
    out = made_up_suites(per_kind, seed, kinds)
    if src is not None or corpus is not None:
        real = real_file_suites(per_family, seed, src, corpus)
        for split in out:
            out[split] += real[split]
    return out


# --- scoring --------------------------------------------------------------------------------------

def evaluate_split(suites: dict[str, list[AgentTask]], source_for, tok, *, keep_transcripts: int = 6,
                   **settings) -> dict:
    """Runs each split's suite through training/eval/agent.py's evaluate(): the result has everything
    evaluate() reports over all tasks, each split's own report under its name (with its task rows), the
    per-kind success of each split in by_kind, and gap = seen - unseen success."""
    from training.eval.agent import evaluate, summarise
    per = {split: evaluate(tasks, source_for, tok, keep_transcripts=keep_transcripts, **settings)
           for split, tasks in suites.items()}
    transcripts = [t for r in per.values() for t in r.pop("transcripts")][:keep_transcripts]
    result = summarise([row for r in per.values() for row in r["tasks"]]) | per | {"transcripts": transcripts}
    kinds = list(dict.fromkeys(row["kind"] for r in per.values() for row in r["tasks"]))
    result["by_kind"] = {k: {s: per[s]["success_by_kind"].get(k) for s in per} for k in kinds}
    seen, unseen = (per.get(s, {}).get("success_rate") for s in ("seen", "unseen"))
    result["gap"] = seen - unseen if seen is not None and unseen is not None else None
    return result
