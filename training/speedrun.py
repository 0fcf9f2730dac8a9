"""`nanocode train speedrun`: every stage, from code on disk to a model `nanocode chat` loads, in one command.

    nanocode train speedrun --preset cpu             # this laptop, about half an hour
    nanocode train speedrun --preset gpu --out RUN   # one GPU, about 15 minutes on an H200
    nanocode train speedrun --preset test            # seconds: the test suite's end-to-end run

Stages, each in its own folder of the run directory (RUN, default $NANOCODE_HOME/runs/speedrun-<preset>):
    corpus/     `data corpus`      code already on disk, cleaned, deduplicated, split
    tokenizer/  `train tokenizer`  the byte-level BPE code tokenizer
    tokens/     `data shards`      the corpus as token shards
    synth/      `data synth`       tool-use conversations from real tools on real code, plus DPO pairs
    base/       `train base`       pretraining with fill-in-the-middle (resumable mid-run)
    sft/        `train sft`        supervised fine-tuning on the conversations
    dpo/        `train dpo`        preference optimisation toward SOUL.md
    eval/       `eval ...`         bpb, tokenizer, HumanEval, agent tasks, SOUL rules on the final model
    report/     `report`           report.md and report.html
    model       a link to the final model (dpo/model, or the last stage that finished)
    logs/       every stage's output, one file per stage
Each stage is called through its Python entry point and is skipped when its output is already complete
(by the stage's own completion check: corpus stats.json, tokenizer compression.json, shard meta.json,
complete.json of the training stages, synth stats.json; our own marker for eval and report), so a rerun
after a kill continues with the first incomplete stage, and pretraining/SFT/DPO resume from their newest
checkpoint inside the stage.

Synth runs before pretraining (it needs only the corpus): its worker pool forks, and forking a process in
which JAX has started its threads can deadlock (Python warns as much), so it goes before anything imports jax.
"""
import json
import os
import re
import sys
import sysconfig
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable


# --- the budgets ---------------------------------------------------------------------------------------
# One row per preset: everything the speedrun decides, in one place. The training stages take their own
# presets (training/config.py, sft.py, dpo.py) plus the overrides given here.

@dataclass(frozen=True)
class Budget:
    stdlib_packages: tuple[str, ...] = ()  # corpus from these stdlib packages only (empty: stdlib + site-packages)
    corpus_bytes: int | None = None        # source read into the corpus (a reproducible sample); None: all
    val_fraction: float = 0.01             # of code documents held out (prose: 10x, at most 0.5), as `data corpus`
    vocab: int = 8192
    tokenizer_bytes: int = 1 << 30         # text the BPE trains on
    tokenizer_baseline: bool = True        # also train a GPT-4-split tokenizer to compare compression with
    base: dict = field(default_factory=dict)   # training/config.py preset name + overrides
    synth_n: int = 1000                    # synthetic conversations (train + val)
    synth_max_files: int = 6000
    synth_workers: int = 0                 # processes (0: all cores)
    sft: dict = field(default_factory=dict)
    dpo: dict = field(default_factory=dict)
    bpb_tokens: int = 65_536               # validation tokens per kind (code, prose)
    tokenizer_eval_mb: float = 2.0
    humaneval_limit: int | None = 20       # problems (None: all 164)
    humaneval_tokens: int = 256
    agent_per_kind: int = 1
    agent_kinds: tuple[str, ...] = ("locate", "answer", "rename", "edit", "create", "run")
    agent_max_steps: int = 8
    reply_tokens: int = 256                # per sampled reply in the agent and SOUL evals
    gate_per_kind: int = 2                 # agent-task requests of each of the 6 kinds for the DPO tool-call gate
    gate_tokens: int = 96                  # tokens per sampled reply there (the first call fits; SFT's default)
    soul: bool = True


MB = 1 << 20
BUDGETS: dict[str, Budget] = {
    # The test suite's end-to-end run (tests/test_speedrun.py): every stage real, everything tiny. Two small
    # stdlib packages give ~430 KB in ~35 files with enough functions for every synth task family, a fifth
    # of them held out so that the bits-per-byte eval has validation documents; the 512-token
    # vocabulary and the depth-2 model make each training stage a few seconds of compiling and stepping.
    # Rows are 512 tokens (not the base test preset's 64) because a synthetic conversation with its real
    # tool output is a few hundred tokens even at this vocabulary: shorter rows would leave SFT nothing.
    "test": Budget(stdlib_packages=("json", "email"), val_fraction=0.2, vocab=512, tokenizer_bytes=1 * MB,
                   tokenizer_baseline=False,
                   base=dict(preset="test", seq_len=512, device_batch=2, total_batch=1024, steps=8, eval_every=0,
                             eval_tokens=1024, save_every=4),
                   synth_n=24, synth_max_files=40, synth_workers=1,  # no fork inside the test process
                   sft=dict(preset="test", steps=6, device_batch=2, eval_every=0, eval_samples=2, save_every=3),
                   dpo=dict(preset="test", steps=4, device_batch=2, eval_every=0, save_every=2),
                   bpb_tokens=2048, tokenizer_eval_mb=0.1, humaneval_limit=2, humaneval_tokens=16,
                   agent_kinds=("locate", "edit"), agent_max_steps=2, reply_tokens=24, soul=False,
                   gate_per_kind=1, gate_tokens=24),
    # This 2-core machine in at most 30 minutes. Measured (wall, the machine shared with other jobs at load 3-8):
    # corpus 27 s (a 40 MB sample of stdlib + site-packages -> 35.6 MB kept; pretraining reads 1.2M tokens,
    # ~4.4 MB, so more would only cost time), tokenizer 21 s (20 MB; 8192 is what the cpu pretraining preset
    # is sized for, training/config.py), shards 52 s (9.0M tokens), synth 44 s (800 conversations, 486 pairs),
    # base ~17 min (the cpu preset, then 300 steps in fp32 on the loaded machine; val bpb 1.94; now 500
    # steps with bf16 matmuls, 8.2 min alone on a quiet machine, val bpb 1.83), SFT 3.2 min (96 steps; 12% of
    # the conversations are longer than the 512-token rows and left out), DPO 3.7 min (98 steps), evals 1.1 min (20 HumanEval
    # problems, one agent task of each kind, the 12 SOUL prompts): ~27 min in all.
    # DPO at lr_frac 0.005 (the dpo cpu preset has 0.02). Plain DPO at 0.02 lost every tool call on
    # agent-task requests (call rate 1.0 -> 0.0 over 12 requests, see _tool_call_gate) for a held-out
    # preference accuracy of 0.94. With the chosen-NLL term and pairs cut after their first differing call
    # (training/dpo.py, sft_data.focus_pair): 0.92 at 0.02 and 1.00 at 0.005, accuracy 0.94-1.00. The gate
    # stays as a safety net.
    "cpu": Budget(corpus_bytes=40 * MB, vocab=8192, tokenizer_bytes=20 * MB, tokenizer_baseline=False,
                  base=dict(preset="cpu"), synth_n=800, synth_max_files=3000,
                  sft=dict(preset="cpu"), dpo=dict(preset="cpu", lr_frac=0.005),
                  bpb_tokens=65_536, tokenizer_eval_mb=2.0, humaneval_limit=20, humaneval_tokens=256,
                  agent_per_kind=1, agent_max_steps=8, reply_tokens=256),
    # One H200 in 15 minutes of stage time (measured, H200 machine with 16 cores, jax 0.11.2): corpus 43 s (the
    # machine's stdlib + site-packages: 29,255 documents, 429 MB kept), tokenizer 8 s (a 100 MB sample, no
    # GPT-4-split baseline), shards 26 s (103.2M train tokens), synth 32 s (6,000 conversations, 3,616 pairs),
    # base 10.6 min (9.1 with the Pallas cross entropy at 1.64M tok/s: 13.3 min in all, the shipped model's
    # run), SFT 35 s, DPO 62 s (with the tool-call gate), evals 51 s (all 164 HumanEval problems, 18
    # agent tasks, 12 SOUL prompts), report 2 s. Sizing: depth 8 at 20 tokens per parameter (41.9M params,
    # 1,600 steps of 0.5M tokens = 839M tokens, ~8 passes over the corpus) ran at ~1.38M tok/s (MFU ~42%).
    # Depth 12 at its Chinchilla budget would take ~100 min, and the bf16 weights of depth 8 are 63 MB, under
    # the ~100 MB that checkpoints/ may hold: the 16384-token vocabulary (4.19 bytes/token on val code, against
    # ~4.3 at 32768) keeps the two 512-wide embedding tables at 8.4M parameters each instead of 16.8M.
    # Repetition, not compute, limits this corpus: a first run of 1,350 steps ended at val bpb 0.588 (code),
    # this one of 1,600 at 0.596 (0.618 at step 1000 in both): more passes over the same 103M tokens no longer
    # help, more distinct code would. Synth is cheap at 16 cores, so 6,000 conversations.
    "gpu": Budget(corpus_bytes=None, vocab=16384, tokenizer_bytes=100 * MB, tokenizer_baseline=False,
                  base=dict(preset="gpu", depth=8), synth_n=6000, synth_max_files=12000,
                  sft=dict(preset="gpu"), dpo=dict(preset="gpu", lr_frac=0.005),
                  bpb_tokens=2_097_152, tokenizer_eval_mb=8.0, humaneval_limit=None, humaneval_tokens=384,
                  agent_per_kind=3, agent_max_steps=12, reply_tokens=512),
}

STAGES = ("corpus", "tokenizer", "tokens", "synth", "base", "sft", "dpo", "eval", "report")
SETTINGS = "speedrun.json"     # the preset and budget a run directory was started with
DONE = "complete.json"         # the marker this file writes for eval (the training stages write their own)


class SpeedrunError(RuntimeError):
    """A problem the user can fix (a run directory started with another preset, an unknown preset)."""


def default_out(preset: str) -> Path:
    from nanocode.lookup import nanocode_home
    return nanocode_home() / "runs" / f"speedrun-{preset}"


# --- the stages --------------------------------------------------------------------------------------------
# Each stage is a completion check and a function that does the work and returns a few metrics for the view.

@dataclass
class Run:
    dir: Path
    preset: str
    budget: Budget

    def __getattr__(self, name):  # run.corpus, run.tokenizer, ... : the stage folders
        if name in STAGES:
            return self.dir / name
        raise AttributeError(name)


def _corpus_done(run: Run) -> bool:
    from training.data.corpus_io import is_complete
    return is_complete(run.corpus)


def _corpus(run: Run) -> dict:
    from training.data.corpus import CorpusConfig, build_corpus, default_sources, directory_sources
    b = run.budget
    if b.stdlib_packages:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        sources = directory_sources([stdlib / name for name in b.stdlib_packages])
    else:
        sources = default_sources()
    config = CorpusConfig(sources=tuple(sources), out=run.corpus, max_bytes=b.corpus_bytes,
                          val_fraction=b.val_fraction, prose_val_fraction=min(0.5, 10 * b.val_fraction),
                          workers=os.cpu_count() or 1)
    stats = build_corpus(config, progress=False)
    return {"documents": sum(s["docs"] for s in stats["splits"].values()),
            "MB": round(stats["kept"]["bytes"] / 1e6, 1)}


def _tokenizer_done(run: Run) -> bool:
    from training.data.tokenizer_train import is_complete
    return is_complete(run.tokenizer, run.corpus)


def _tokenizer(run: Run) -> dict:
    from training.data.tokenizer_train import print_report, train_tokenizer
    b = run.budget
    report = train_tokenizer(run.corpus, run.tokenizer, b.vocab, b.tokenizer_bytes, baseline=b.tokenizer_baseline)
    print_report(report)
    return {"vocab": report["vocab_size"], "code bytes/token": report["val"]["code"].get("nanocode")}


def _tokens_done(run: Run) -> bool:
    from training.data.shards import is_complete
    return is_complete(run.tokens, run.tokenizer, run.corpus)


def _tokens(run: Run) -> dict:
    from training.data.shards import tokenize_corpus
    meta = tokenize_corpus(run.corpus, run.tokenizer, run.tokens, progress=False)
    return {"train tokens": meta["splits"]["train"]["n_tokens"]}


def _marker_done(folder: Path) -> bool:
    return (folder / DONE).is_file()


def _preset(spec: dict, from_preset):
    spec = dict(spec)
    return from_preset(spec.pop("preset"), **spec)


def _base(run: Run, console) -> dict:
    from training.config import from_preset
    from training.pretrain import train_base
    summary = train_base(_preset(run.budget.base, from_preset), run.base, run.tokens, run.tokenizer, console=console)
    return {"steps": summary["step"], "val bpb": _bpb(summary.get("val_bpb"))}


def _synth_done(run: Run) -> bool:
    return (run.synth / "stats.json").is_file()


def _synth(run: Run) -> dict:
    from training.synth.driver import SynthConfig, synth
    b = run.budget
    stats = synth(SynthConfig(out=run.synth, corpus=run.corpus, n=b.synth_n, max_files=b.synth_max_files,
                              workers=b.synth_workers))
    return {"conversations": sum(stats["conversations"].values()), "pairs": sum(stats["pairs"].values())}


def _sft(run: Run, console) -> dict:
    from training.sft import from_preset, train_sft
    summary = train_sft(_preset(run.budget.sft, from_preset), run.base / "model", run.synth, run.sft, run.tokens,
                        console=console)
    final = summary.get("final") or {}
    return {"steps": summary["step"], "val loss": final.get("val_loss"),
            "tool-call validity": final.get("tool_call_validity")}


def _dpo(run: Run, console) -> dict:
    from training.dpo import from_preset, train_dpo
    summary = train_dpo(_preset(run.budget.dpo, from_preset), run.sft / "model", run.synth, run.dpo,
                        console=console)
    after = summary.get("after") or {}
    gate = _tool_call_gate(run, console)
    return {"steps": summary["step"], "pref. accuracy": after.get("val_accuracy"),
            "call rate": gate["dpo"], "sft call rate": gate["sft"], "final": gate["use"]}


GATE = "gate.json"
GATE_TOLERANCE = 0.1  # the share of well-formed calls DPO may lose (sampling noise on a few prompts) and still ship


def _dpo_done(run: Run) -> bool:
    return _marker_done(run.dpo) and (run.dpo / GATE).is_file()


def _tool_call_gate(run: Run, console) -> dict:
    """Ships the DPO model only if it still writes well-formed tool calls. DPO pushes the log-ratio margin up
    without a term that keeps the policy's generations intact; on the cpu budget we saw it keep SFT's
    tool-call validity on the synth requests it was trained near (1.0) but lose it on the agent tasks' requests
    (every call malformed: a tool named `Reads`, stray <|tool_call_start|>) while its held-out preference
    accuracy rose to 0.94. A speedrun must end in a model the agent can use, so both models answer agent-task
    requests (seed 1: not the eval's tasks, which use seed 0) and the final model falls back to SFT's when DPO
    loses more than GATE_TOLERANCE of its call rate (the share of replies that make a well-formed call: a
    reply that never closes its call is truncated, which tool_call_validity leaves out but the agent cannot
    use); gate.json says which."""
    from nanocode.checkpoint import load_model
    from nanocode.sampler import Sampler
    from training.eval.agent_tasks import make_suite
    from training.sft import tool_call_validity

    val = [{"messages": [{"role": "user", "content": task.prompt}]}
           for task in make_suite(run.budget.gate_per_kind, seed=1)]
    validity = {}
    for stage in ("sft", "dpo"):
        net, tok, _ = load_model(getattr(run, stage) / "model")
        validity[stage] = tool_call_validity(Sampler(net), val, tok, run.budget.gate_tokens).get("call_rate")
    sft, dpo = validity["sft"], validity["dpo"]
    use = "sft" if sft is not None and (dpo is None or dpo < sft - GATE_TOLERANCE) else "dpo"
    gate = {"sft": sft, "dpo": dpo, "tolerance": GATE_TOLERANCE, "samples": len(val), "use": use}
    console.print(f"well-formed tool calls on {len(val)} agent-task requests: SFT {sft}, DPO {dpo}; the final model "
                  f"is {use.upper()}'s")
    _write_json(run.dpo / GATE, gate)
    return gate


def _bpb(value) -> float | None:
    """The code bits per byte out of a {kind: bpb} dict (or None)."""
    return value.get("code") if isinstance(value, dict) else None


def final_model(run: Run) -> Path | None:
    """The model of the last training stage that finished: dpo (unless its tool-call gate chose sft), else sft,
    else base."""
    stages = ["dpo", "sft", "base"]
    gate = json.loads((run.dpo / GATE).read_text()) if (run.dpo / GATE).is_file() else {}
    if gate.get("use") == "sft":
        stages.remove("dpo")
    for stage in stages:
        if _marker_done(getattr(run, stage)) and (getattr(run, stage) / "model" / "config.json").is_file():
            return getattr(run, stage) / "model"
    return None


def _eval_done(run: Run) -> bool:
    """The evals ran on the model that is final now (the DPO gate can change which one that is)."""
    if not _marker_done(run.eval):
        return False
    final = final_model(run)
    return final is not None and json.loads((run.eval / DONE).read_text()).get("model") == str(
        final.relative_to(run.dir))


def _eval(run: Run, console) -> dict:
    """Every eval on the final model, results in MODEL/eval/<name>.json (where `nanocode report` reads them).
    An eval whose result is newer than the model is not run again, so a killed eval stage continues."""
    from nanocode import runtime
    from nanocode.checkpoint import load_model
    from training.eval.results import print_table, write_result

    b = run.budget
    model_dir = final_model(run)
    if model_dir is None:
        raise SpeedrunError("no finished model to evaluate; the training stages did not complete")
    runtime.setup_jax()
    net, tok, info = load_model(model_dir)
    made = (model_dir / "config.json").stat().st_mtime
    results = {}

    def run_eval(name: str, evaluate, summary_table) -> None:
        path = model_dir / "eval" / f"{name}.json"
        if path.is_file() and path.stat().st_mtime >= made:
            results[name] = json.loads(path.read_text())
            console.print(f"{name}: already evaluated ({path})")
            return
        console.print(f"[bold]eval {name}[/]")
        results[name] = evaluate()
        print_table(summary_table(results[name]), console)
        write_result(model_dir, name, results[name])

    from training.eval import bpb as eval_bpb, tokenizer as eval_tokenizer
    run_eval("bpb", lambda: eval_bpb.evaluate(net, tok, model_dir, run.tokens, max_tokens=b.bpb_tokens),
             eval_bpb.summary_table)
    run_eval("tokenizer", lambda: eval_tokenizer.evaluate(tok, run.corpus, "val", int(b.tokenizer_eval_mb * 1e6)),
             eval_tokenizer.summary_table)

    from nanocode.sampler import Sampler
    from training.eval import humaneval as he
    from training.eval.sandbox import Limits
    mode = "base" if info.get("meta", {}).get("stage") == "base" else "chat"
    sampler = Sampler(net)
    run_eval("humaneval", lambda: he.evaluate(sampler, tok, he.load_problems(b.humaneval_limit), mode=mode,
                                              max_new_tokens=b.humaneval_tokens, limits=Limits(timeout_s=10.0)),
             he.summary_table)

    from agent.source import SamplerSource  # the agent loop imports no UI library (DESIGN.md)
    from training.eval import agent_tasks, agent as eval_agent
    source = SamplerSource(sampler, context_len=net.config.seq_len, seed=0)
    tasks = agent_tasks.make_suite(b.agent_per_kind, 0, b.agent_kinds)
    run_eval("agent", lambda: eval_agent.evaluate(tasks, lambda task: source, tok, max_steps=b.agent_max_steps,
                                                  max_reply_tokens=b.reply_tokens),
             eval_agent.summary_table)
    if b.soul:
        from training.eval import soul as eval_soul
        run_eval("soul", lambda: eval_soul.evaluate(lambda prompt: source, tok, max_reply_tokens=b.reply_tokens),
                 eval_soul.summary_table)

    metrics = {"model": str(model_dir.relative_to(run.dir)),
               "code bpb": _bpb(results["bpb"].get("bpb")),
               "humaneval pass@1": results["humaneval"].get("pass@1"),
               "agent success": results["agent"].get("success_rate"),
               "well-formed calls": results["agent"].get("well_formed_call_rate")}
    if "soul" in results:
        metrics["soul (all rules)"] = results["soul"].get("all_rules")
    _write_json(run.eval / DONE, metrics)
    return metrics


def _report_done(run: Run) -> bool:
    """report.md exists and is newer than every stage's output, so it shows the finished run."""
    md = run.report / "report.md"
    markers = [run.eval / DONE] + [getattr(run, s) / "complete.json" for s in ("base", "sft", "dpo")]
    return md.is_file() and all(md.stat().st_mtime >= m.stat().st_mtime for m in markers if m.is_file())


def _report(run: Run) -> dict:
    from training.report import write_report
    # The report walks the run directory; the `model` link would list the final model a second time.
    link = run.dir / "model"
    if link.is_symlink():
        link.unlink()
    md, html = write_report(run.dir)
    link_final_model(run)
    return {"report": str(md.relative_to(run.dir))}


def link_final_model(run: Run) -> Path | None:
    """RUN/model -> the final model (a relative link, so the run directory can move), also published as
    $NANOCODE_HOME/models/<run name>, where `nanocode chat` finds the newest model."""
    from training.sft import publish
    final = final_model(run)
    if final is None:
        return None
    link = run.dir / "model"
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise SpeedrunError(f"{link} exists and is not a link; move it away so the final model can be linked there")
    link.symlink_to(final.relative_to(run.dir), target_is_directory=True)
    publish(final, run.dir.name)
    return link


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    done: Callable[[Run], bool]         # the stage's output is complete
    work: Callable[..., dict]           # (run) or, with takes_console, (run, console) -> metrics for the view
    takes_console: bool = False


PIPELINE = [
    Stage("corpus", "collect and clean code", _corpus_done, _corpus),
    Stage("tokenizer", "train the BPE tokenizer", _tokenizer_done, _tokenizer),
    Stage("tokens", "tokenize into shards", _tokens_done, _tokens),
    Stage("synth", "synthetic tool-use data", _synth_done, _synth),
    Stage("base", "pretrain with FIM", lambda r: _marker_done(r.base), _base, True),
    Stage("sft", "supervised fine-tuning", lambda r: _marker_done(r.sft), _sft, True),
    Stage("dpo", "preference optimisation", _dpo_done, _dpo, True),
    Stage("eval", "evaluate the final model", _eval_done, _eval, True),
    Stage("report", "write the report", _report_done, _report),
]
assert tuple(s.name for s in PIPELINE) == STAGES


# --- running them --------------------------------------------------------------------------------------------

def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def open_run(out: Path | None, preset: str) -> Run:
    """The run directory, checked against the preset it was started with (a run is one recipe: resuming
    a cpu run with the gpu budget would mix two models' stages)."""
    if preset not in BUDGETS:
        raise SpeedrunError(f"unknown preset {preset!r}; choose one of {', '.join(BUDGETS)}")
    out = Path(out or default_out(preset)).expanduser().absolute()
    budget = BUDGETS[preset]
    settings = out / SETTINGS
    saved = json.loads(settings.read_text()) if settings.is_file() else None
    if saved is not None and saved.get("preset") != preset:
        raise SpeedrunError(f"{out} holds a speedrun with --preset {saved.get('preset')}; rerun with that preset "
                            f"to continue it, or pass another --out for a --preset {preset} run")
    if saved is None:
        if out.is_dir() and any(p.name in STAGES for p in out.iterdir()):
            raise SpeedrunError(f"{out} holds stage folders but no {SETTINGS}: it was not made by the speedrun; "
                                "pass another --out")
        _write_json(settings, {"preset": preset, "budget": asdict(budget)})
    (out / "logs").mkdir(parents=True, exist_ok=True)
    return Run(out, preset, budget)


class _to_log:
    """Sends a stage's output to its log file: sys.stdout/sys.stderr, and also file descriptors 1 and 2,
    because worker processes (corpus, synth, HumanEval's sandbox) and XLA's C++ logging write there
    directly and would otherwise scribble over the progress view."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.log = open(self.path, "a", buffering=1, encoding="utf-8")
        self.saved_fds = os.dup(1), os.dup(2)
        self.saved_files = sys.stdout, sys.stderr
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)
        sys.stdout = sys.stderr = self.log
        return self.log

    def __exit__(self, *exc):
        self.log.flush()
        sys.stdout, sys.stderr = self.saved_files
        for fd, saved in zip((1, 2), self.saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        self.log.close()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_line(path: Path, limit: int = 100) -> str:
    """The last non-empty line of a log (for the progress view), without colour codes."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    line = next((ln for ln in reversed(lines) if ln.strip()), "")
    line = _ANSI.sub("", line).strip()
    return line if len(line) <= limit else line[:limit - 1] + "…"


@dataclass
class Status:
    state: str = "pending"     # pending | skipped | running | done | failed
    seconds: float | None = None
    started: float | None = None
    metrics: dict = field(default_factory=dict)
    error: str = ""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stage_table(run: Run, status: dict[str, Status]):
    from rich.table import Table
    colours = {"done": "green", "skipped": "cyan", "running": "yellow", "failed": "red", "pending": "dim"}
    table = Table(title=f"nanocode speedrun --preset {run.preset} -> {run.dir}", title_justify="left")
    for col in ("stage", "", "status", "time", "detail"):
        table.add_column(col, justify="right" if col == "time" else "left", no_wrap=col != "detail")
    for stage in PIPELINE:
        s = status[stage.name]
        seconds = time.time() - s.started if s.state == "running" else s.seconds
        if s.state == "running":
            detail = last_line(run.dir / "logs" / f"{stage.name}.log")
        elif s.state == "failed":
            detail = f"{s.error}  (log: logs/{stage.name}.log)"
        else:
            detail = ", ".join(f"{k} {_fmt(v)}" for k, v in s.metrics.items() if v is not None)
        table.add_row(stage.name, stage.what, f"[{colours[s.state]}]{s.state}[/]",
                      "" if seconds is None else f"{int(seconds // 60)}:{seconds % 60:04.1f}", detail)
    return table


def speedrun(preset: str = "cpu", out: Path | None = None, console=None) -> dict:
    """Runs (or continues) every stage; returns the summary also written to RUN/summary.json.
    Raises SpeedrunError with the stage's error when a stage fails (its log says the rest)."""
    from rich.console import Console
    from rich.live import Live

    run = open_run(out, preset)
    # The view writes to a copy of the terminal's descriptor: fds 1 and 2 go to the stage logs meanwhile.
    if console is None:
        terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        console = Console(file=terminal, width=None if terminal.isatty() else 160)
    status = {s.name: Status() for s in PIPELINE}
    timings = _read_timings(run)
    live = Live(get_renderable=lambda: stage_table(run, status), console=console, refresh_per_second=2,
                redirect_stdout=False, redirect_stderr=False, transient=False) if console.is_terminal else None
    if live:
        live.start()
    failure = None
    try:
        for stage in PIPELINE:
            s = status[stage.name]
            if stage.done(run):
                s.state, s.seconds = "skipped", timings.get(stage.name, {}).get("seconds")
                s.metrics = timings.get(stage.name, {}).get("metrics", {})
                if not live:
                    console.print(f"{stage.name}: complete already, skipped")
                continue
            s.state, s.started, cpu_start = "running", time.time(), _cpu_seconds()
            if not live:
                console.print(f"{stage.name}: running ({stage.what}; log: {run.dir / 'logs' / (stage.name + '.log')})")
            log_path = run.dir / "logs" / f"{stage.name}.log"
            try:
                with _to_log(log_path) as log:
                    print(f"--- {stage.name} started {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
                    if stage.takes_console:
                        stage_console = Console(file=log, width=120, force_terminal=False)
                        s.metrics = stage.work(run, stage_console) or {}
                    else:
                        s.metrics = stage.work(run) or {}
                    print(f"--- {stage.name} finished in {time.time() - s.started:.1f} s", flush=True)
            except BaseException as e:  # KeyboardInterrupt too: the table says which stage, the log says why
                s.state, s.seconds = "failed", time.time() - s.started
                s.error = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
                with open(log_path, "a", encoding="utf-8") as f:
                    traceback.print_exc(file=f)
                failure = (stage.name, e)
                break
            s.state, s.seconds = "done", time.time() - s.started
            # CPU seconds (this process and its finished workers) too: on a shared machine the wall time says
            # more about the neighbours than about the stage.
            timings[stage.name] = {"seconds": round(s.seconds, 1), "cpu_seconds": round(_cpu_seconds() - cpu_start, 1),
                                   "metrics": s.metrics}
            _write_json(run.dir / "timings.json", timings)
            if not live:
                console.print(f"{stage.name}: done in {s.seconds:.1f} s " +
                              ", ".join(f"{k} {_fmt(v)}" for k, v in s.metrics.items() if v is not None))
    finally:
        if live:
            live.stop()
        else:
            console.print(stage_table(run, status))

    link = link_final_model(run)
    summary = {"run": str(run.dir), "preset": preset, "model": str(link) if link else None,
               "report": str(run.report / "report.md") if (run.report / "report.md").is_file() else None,
               "stages": {name: {"state": s.state, "seconds": None if s.seconds is None else round(s.seconds, 1),
                                 "cpu_seconds": timings.get(name, {}).get("cpu_seconds"),
                                 **({"error": s.error} if s.error else {})}
                          for name, s in status.items()},
               "metrics": {name: t.get("metrics", {}) for name, t in timings.items()}}
    _write_json(run.dir / "summary.json", summary)
    print_summary(summary, console)
    if failure is not None:
        name, e = failure
        if isinstance(e, KeyboardInterrupt):
            raise e
        raise SpeedrunError(f"stage {name} failed: {status[name].error}\nsee {run.dir / 'logs' / (name + '.log')}; "
                            f"fix the cause and rerun the same command to continue from {name}") from e
    return summary


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _read_timings(run: Run) -> dict:
    path = run.dir / "timings.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def print_summary(summary: dict, console) -> None:
    total = sum(s["seconds"] or 0 for s in summary["stages"].values())
    console.print(f"\n[bold]speedrun --preset {summary['preset']}[/] ({total / 60:.1f} min of stage time)",
                  highlight=False)
    console.print(f"  model:  {summary['model'] or 'none finished'}")
    if summary["model"]:
        console.print(f"          chat with it: nanocode chat --model {summary['model']}")
    console.print(f"  report: {summary['report'] or 'not written yet'}")
    key = [("base", "val bpb"), ("sft", "tool-call validity"), ("dpo", "pref. accuracy"),
           ("dpo", "call rate"), ("dpo", "sft call rate"), ("dpo", "final"), ("eval", "code bpb"),
           ("eval", "humaneval pass@1"), ("eval", "agent success"), ("eval", "well-formed calls"),
           ("eval", "soul (all rules)")]
    shown = [(f"{stage} {name}", summary["metrics"].get(stage, {}).get(name)) for stage, name in key]
    shown = [(k, v) for k, v in shown if v is not None]
    if shown:
        console.print("  " + " | ".join(f"{k} {_fmt(v)}" for k, v in shown), highlight=False)
