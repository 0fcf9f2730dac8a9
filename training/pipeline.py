"""The speedrun's recipe: per preset, the budget of every stage (BUDGETS); per stage, the check that its output
is complete and the call that makes it (PIPELINE); DPO's ship gate; which model is final. training/speedrun.py
runs the recipe (skipping, logging, the progress view); nothing here prints outside a stage's log.

Each stage is called through its Python entry point and is skipped when its output is already complete, by
the stage's own completion check: corpus stats.json, tokenizer compression.json, shard meta.json,
complete.json of the training stages, synth stats.json; the marker written here for eval and report.
"""
import json
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from training.common import COMPLETE, StageError, publish, write_json
from training.eval.agent_tasks import ALL_KINDS


# --- the budgets ---------------------------------------------------------------------------------------
# One row per preset: everything the speedrun decides, in one place. The training stages take their own
# presets (training/config.py, sft.py, dpo.py) plus the overrides given here. How each row was measured and
# chosen, stage by stage: training/LOG.md.

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
    synth_workers: int = 0                 # processes (0: all cores; beside base: all but two)
    synth_beside_base: bool = False        # synth in a subprocess while base pretrains (GPU machines)
    sft: dict = field(default_factory=dict)
    dpo: dict = field(default_factory=dict)
    rl: dict = field(default_factory=dict)     # training/rl.py preset name + overrides
    bpb_tokens: int = 65_536               # validation tokens per kind (code, prose)
    tokenizer_eval_mb: float = 2.0
    humaneval_limit: int | None = 20       # problems (None: all 164)
    humaneval_tokens: int = 256
    agent_per_kind: int = 1                # made-up tasks of each kind, each asked in seen and unseen phrasings
    agent_kinds: tuple[str, ...] = ALL_KINDS
    agent_per_family: int = 0              # real-file tasks of each synth family from the corpus's val split
    agent_max_steps: int = 8
    reply_tokens: int = 256                # per sampled reply in the agent and SOUL evals
    gate_per_kind: int = 2                 # agent-task requests of each of the 6 kinds for the DPO tool-call gate
    gate_tokens: int = 96                  # tokens per sampled reply there (the first call fits; SFT's default)
    soul: bool = True


MB = 1 << 20
BUDGETS: dict[str, Budget] = {
    # The test suite's end-to-end run (tests/test_speedrun.py): every stage real, everything tiny. Two small
    # stdlib packages (~430 KB in ~35 files) give enough functions for every synth task family, a fifth of them
    # held out so that the bits-per-byte eval has validation documents; the 512-token vocabulary and the depth-2
    # model make each training stage a few seconds. Rows are 512 tokens (not the base test preset's 64) because
    # a synthetic conversation with its real tool output is a few hundred tokens even at this vocabulary.
    "test": Budget(stdlib_packages=("json", "email"), val_fraction=0.2, vocab=512, tokenizer_bytes=1 * MB,
                   tokenizer_baseline=False,
                   base=dict(preset="test", seq_len=512, device_batch=2, total_batch=1024, steps=8, eval_every=0,
                             eval_tokens=1024, save_every=4),
                   synth_n=24, synth_max_files=40, synth_workers=1,  # no fork inside the test process
                   sft=dict(preset="test", steps=6, device_batch=2, eval_every=0, eval_samples=2, save_every=3),
                   dpo=dict(preset="test", steps=4, device_batch=2, eval_every=0, save_every=2),
                   rl=dict(preset="test", kinds="locate,edit"),
                   bpb_tokens=2048, tokenizer_eval_mb=0.1, humaneval_limit=2, humaneval_tokens=16,
                   agent_kinds=("locate", "edit"), agent_max_steps=2, reply_tokens=24, soul=False,
                   gate_per_kind=1, gate_tokens=24),
    # This 2-core machine in at most 30 minutes. A 40 MB sample of the corpus is plenty: the cpu pretraining
    # preset reads 2.05M tokens (500 steps of 4,096). DPO at lr_frac 0.005 (the dpo cpu preset has 0.02): it kept
    # every well-formed tool call on agent-task requests (1.00 against 0.92 at 0.02; plain DPO at 0.02 lost them
    # all), and the gate stays as a safety net.
    "cpu": Budget(corpus_bytes=40 * MB, vocab=8192, tokenizer_bytes=20 * MB, tokenizer_baseline=False,
                  base=dict(preset="cpu"), synth_n=800, synth_max_files=3000,
                  sft=dict(preset="cpu"), dpo=dict(preset="cpu", lr_frac=0.005),
                  rl=dict(preset="cpu", rounds=4),  # not yet timed inside the 30 minutes (training/LOG.md)
                  bpb_tokens=65_536, tokenizer_eval_mb=2.0, humaneval_limit=20, humaneval_tokens=256,
                  agent_per_kind=1, agent_kinds=("locate", "answer", "edit", "read", "explore", "chat"),
                  agent_max_steps=8, reply_tokens=256),
    # One H200 in ~20 minutes of stage time (13.3 min for the shipped model's run, before issue 15's data). Depth 8 at 20 tokens per
    # parameter (41.9M params, 1,600 steps of 0.5M tokens): depth 12's Chinchilla budget would take ~100 min, and
    # depth 8's bf16 weights (63 MB) fit the ~100 MB that checkpoints/ may hold; the 16384-token vocabulary keeps
    # each 512-wide embedding table at 8.4M parameters (4.19 bytes/token on val code, ~4.3 at 32768).
    # Issue 15 raised the conversations to 50,000: 499 s of synth on the H200's 16 cores, so synth runs beside
    # base (464 s) in a subprocess; at ~283 tokens each, two epochs in 16-row steps are ~900 steps (~32k tokens a step, well under
    # a minute at base speed). DPO is capped at 400 steps of 32 pairs (the ~29k pairs would be ~1,800 at 2 epochs),
    # RL at 4 minutes of rounds, pretraining at 1,300 steps: 1,350 ended at val bpb 0.588, 1,600 at 0.596.
    "gpu": Budget(corpus_bytes=None, vocab=16384, tokenizer_bytes=100 * MB, tokenizer_baseline=False,
                  base=dict(preset="gpu", depth=8, steps=1300), synth_n=50_000, synth_max_files=20_000,
                  synth_beside_base=True,
                  sft=dict(preset="gpu", epochs=2.0), dpo=dict(preset="gpu", lr_frac=0.005, steps=400),
                  rl=dict(preset="gpu", rounds=20, max_minutes=4.0),
                  bpb_tokens=2_097_152, tokenizer_eval_mb=8.0, humaneval_limit=None, humaneval_tokens=384,
                  agent_per_kind=2, agent_per_family=1, agent_max_steps=12, reply_tokens=512),
}

STAGES = ("corpus", "tokenizer", "tokens", "synth", "base", "sft", "dpo", "rl", "eval", "report")


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
    return (folder / COMPLETE).is_file()


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
    synth(SynthConfig(out=run.synth, corpus=run.corpus, n=b.synth_n, max_files=b.synth_max_files,
                      workers=b.synth_workers))
    return _synth_metrics(run)


def _synth_metrics(run: Run) -> dict:
    stats = json.loads((run.synth / "stats.json").read_text())
    return {"conversations": sum(stats["conversations"].values()), "pairs": sum(stats["pairs"].values())}


def _synth_command(run: Run) -> list[str] | None:
    """`nanocode data synth` as a subprocess, run beside pretraining: on the H200 synth took 499 s of CPU
    work (50,000 conversations) while base kept the GPU busy for 464 s in a stage of its own (training/LOG.md
    2026-12-04). A subprocess, not a fork: this process has started JAX by then (see speedrun.py)."""
    b = run.budget
    if not b.synth_beside_base:
        return None
    workers = b.synth_workers or max(1, (os.cpu_count() or 1) - 2)  # two cores left to the pretraining
    return [sys.executable, "-c", "from nanocode.cli import app; app()", "data", "synth", "--corpus", str(run.corpus),
            "--out", str(run.synth), "--n", str(b.synth_n), "--max-files", str(b.synth_max_files),
            "--workers", str(workers)]


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
    """Ships the DPO model only if it still writes well-formed tool calls: plain DPO once raised held-out
    preference accuracy to 0.94 while every call it made on agent-task requests was malformed (training/LOG.md),
    and a speedrun must end in a model the agent can use. Both models answer agent-task requests (seed 1: not
    the eval's tasks, which use seed 0) and the final model falls back to SFT's when DPO loses more than
    GATE_TOLERANCE of its call rate (the share of replies that make a well-formed call: a reply that never
    closes its call is truncated, which tool_call_validity leaves out but the agent cannot use); gate.json
    says which."""
    from nanocode.checkpoint import load_model
    from nanocode.sampler import Sampler
    from training.eval.agent_tasks import make_suite
    from training.eval.tool_calls import tool_call_validity

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
    write_json(run.dpo / GATE, gate)
    return gate


def _rl(run: Run, console) -> dict:
    """RL from the model the DPO gate chose; its model ships only if its held-out agent success did not fall
    (the gate in rl/gate.json, as DPO's)."""
    from training.rl import from_preset, train_rl
    start = final_model(run, before="rl")
    summary = train_rl(_preset(run.budget.rl, from_preset), start, run.rl, console=console)
    first, last = (summary.get(k) or {} for k in ("first", "final"))
    before, after = first.get("success_rate"), last.get("success_rate")
    use = "rl" if before is not None and after is not None and after >= before else start.parent.name
    gate = {"from": start.parent.name, "held_out_before": before, "held_out_after": after, "use": use}
    console.print(f"held-out agent success: {before} before RL, {after} after; the final model is {use.upper()}'s")
    write_json(run.rl / GATE, gate)
    return {"rounds": summary["rounds"], "held-out before": before, "held-out after": after, "final": use}


def _rl_done(run: Run) -> bool:
    return _marker_done(run.rl) and (run.rl / GATE).is_file()


def _bpb(value) -> float | None:
    """The code bits per byte out of a {kind: bpb} dict (or None)."""
    return value.get("code") if isinstance(value, dict) else None


def final_model(run: Run, before: str | None = None) -> Path | None:
    """The model of the last training stage that finished (of those before `before`): rl, dpo, sft, base,
    leaving out a stage whose gate chose an earlier model."""
    stages = ["rl", "dpo", "sft", "base"]
    if before is not None:
        stages = stages[stages.index(before) + 1:]
    for stage in ("rl", "dpo"):
        gate = getattr(run, stage) / GATE
        if stage in stages and gate.is_file() and json.loads(gate.read_text()).get("use") != stage:
            stages.remove(stage)
    for stage in stages:
        if _marker_done(getattr(run, stage)) and (getattr(run, stage) / "model" / "config.json").is_file():
            return getattr(run, stage) / "model"
    return None


def _eval_done(run: Run) -> bool:
    """The evals ran on the model that is final now (the DPO gate can change which one that is)."""
    if not _marker_done(run.eval):
        return False
    final = final_model(run)
    return final is not None and json.loads((run.eval / COMPLETE).read_text()).get("model") == str(
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
        raise StageError("no finished model to evaluate; the training stages did not complete")
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
    from training.eval import agent as eval_agent, phrasing_split
    source = SamplerSource(sampler, context_len=net.config.seq_len, seed=0)
    suites = phrasing_split.split_suites(b.agent_per_kind, 0, b.agent_kinds, per_family=b.agent_per_family,
                                         corpus=run.corpus if b.agent_per_family else None)
    run_eval("agent", lambda: phrasing_split.evaluate_split(suites, lambda task: source, tok,
                                                            max_steps=b.agent_max_steps,
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
               "agent unseen": results["agent"].get("unseen", {}).get("success_rate"),
               "well-formed calls": results["agent"].get("well_formed_call_rate")}
    if "soul" in results:
        metrics["soul (all rules)"] = results["soul"].get("all_rules")
    write_json(run.eval / COMPLETE, metrics)
    return metrics


def _report_done(run: Run) -> bool:
    """report.md exists and is newer than every stage's output, so it shows the finished run."""
    md = run.report / "report.md"
    markers = [run.eval / COMPLETE] + [getattr(run, s) / COMPLETE for s in ("base", "sft", "dpo", "rl")]
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
    final = final_model(run)
    if final is None:
        return None
    link = run.dir / "model"
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise StageError(f"{link} exists and is not a link; move it away so the final model can be linked there")
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
    # a subprocess that does the work while the next stage runs (None: run in this process, in turn);
    # the stage after that one waits for it
    beside: Callable[[Run], list[str] | None] | None = None
    metrics: Callable[[Run], dict] | None = None   # of a stage done beside, once it finished


PIPELINE = [
    Stage("corpus", "collect and clean code", _corpus_done, _corpus),
    Stage("tokenizer", "train the BPE tokenizer", _tokenizer_done, _tokenizer),
    Stage("tokens", "tokenize into shards", _tokens_done, _tokens),
    Stage("synth", "synthetic tool-use data", _synth_done, _synth, beside=_synth_command, metrics=_synth_metrics),
    Stage("base", "pretrain with FIM", lambda r: _marker_done(r.base), _base, True),
    Stage("sft", "supervised fine-tuning", lambda r: _marker_done(r.sft), _sft, True),
    Stage("dpo", "preference optimisation", _dpo_done, _dpo, True),
    Stage("rl", "reinforcement on agent tasks", _rl_done, _rl, True),
    Stage("eval", "evaluate the final model", _eval_done, _eval, True),
    Stage("report", "write the report", _report_done, _report),
]
assert tuple(s.name for s in PIPELINE) == STAGES


