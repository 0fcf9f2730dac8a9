"""The `nanocode` command. The agent's commands (chat, run, bench chat) are written here. Every training stage,
eval and benchmark owns its flags in its own module (nanochat's shape: `python -m training.pretrain --depth 12`
works), and `nanocode <group> <command> ARGS...` hands ARGS untouched to that module's main(argv), so a flag
is written once, where the stage reads it. Commands import their modules inside their bodies so that
`nanocode --help` stays instant and training commands never import the UI libraries."""
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="nanocode: a small local coding agent and the stack that trains it.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train a model: tokenizer, base, sft, dpo, rl, speedrun.", no_args_is_help=True)
data_app = typer.Typer(help="Build training data: corpus, shards, synthetic conversations.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a model.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: sampling and training throughput.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")


def fail(message: str) -> None:
    """Print a clear error and exit non-zero (no traceback for user mistakes)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


# --- commands a module owns: its flags, its main(argv); here only its line of help -----------------------
# `nanocode train base --help` prints the module's own flags; the line here is what `nanocode train --help`
# lists without importing the module (and so without importing JAX).

ROUTES = {
    train_app: {
        "tokenizer": ("training.data.tokenizer_train", "Train the byte-level BPE code tokenizer and report its "
                      "compression."),
        "base": ("training.pretrain", "Pretrain a base model on the token shards (resumable: rerun the same command "
                 "after a crash)."),
        "sft": ("training.sft", "Supervised fine-tuning on tool-use conversations (loss on the assistant's tokens "
                "only; resumable)."),
        "dpo": ("training.dpo", "Direct preference optimisation toward SOUL.md from the SFT model (frozen "
                "reference; resumable)."),
        "rl": ("training.rl", "Reinforcement on verifiable agent tasks with the real tools, from the DPO model "
               "(resumable by round)."),
        "speedrun": ("training.speedrun", "Every stage in one go: corpus, tokenizer, shards, base, synth, SFT, DPO, "
                     "RL, eval, report (each skipped when done)."),
    },
    data_app: {
        "corpus": ("training.data.corpus", "Collect, clean, deduplicate and split code already on disk (no "
                   "network)."),
        "shards": ("training.data.shards", "Tokenize the corpus into flat token shards for pretraining."),
    },
    # Every `nanocode eval X --model DIR` prints a table and writes DIR/eval/X.json; `nanocode report` collects them.
    eval_app: {
        "bpb": ("training.eval.bpb", "Bits per byte on the validation split, code and prose separately."),
        "humaneval": ("training.eval.humaneval", "pass@k on the 164 HumanEval problems, every sample executed in a "
                      "sandbox."),
        "agent": ("training.eval.agent", "Agentic tasks in temporary workspaces through the real agent loop, every "
                  "call approved."),
        "soul": ("training.eval.soul", "The share of sampled replies that keep each SOUL.md rule."),
        "tokenizer": ("training.eval.tokenizer", "Bytes per token of the model's tokenizer on validation code and "
                      "prose."),
    },
    bench_app: {
        "sample": ("nanocode.bench_sample", "Sampling speed: time to first token, prefill and decode tok/s, bandwidth "
                   "on GPU."),
        "train": ("training.bench_train", "Training throughput on random tokens: tok/s, model TFLOP/s, MFU, memory."),
    },
    # Top-level commands; routed at the end of this file so that `nanocode --help` lists chat and run first.
    app: {
        "serve": ("nanocode.serve.server", "An OpenAI-compatible server over a model (/v1/chat/completions, "
                  "whole or streamed, with tool calls) on 127.0.0.1:8000."),
        "report": ("training.report", "Write RUN_DIR/report/report.md and a self-contained report.html: config, "
                   "data, curves, evals, card."),
    },
}


def route(group: typer.Typer, name: str, module: str, help_line: str) -> None:
    """`nanocode ... name ARGS` -> module.main(ARGS): typer parses nothing (not even --help), the stage's own
    argparse does, and its exit status (0, 2 for a user error, ...) is the command's."""
    def command(ctx: typer.Context) -> None:
        import importlib
        try:
            code = importlib.import_module(module).main(ctx.args)
        except SystemExit as e:  # argparse exits itself for --help (0) and for a flag it cannot parse (2)
            code = e.code
        raise typer.Exit(code or 0)
    group.command(name, help=help_line, add_help_option=False, context_settings={
        "allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})(command)


for _group, _commands in ROUTES.items():
    for _name, (_module, _help) in _commands.items():
        if _group is not app:
            route(_group, _name, _module, _help)


# --- chat / run (agent) --------------------------------------------------------------------------

# Options shared by `chat` and `run`. `--resume [ID]`: typer has no optional-value options, so --resume is a
# flag and the ID an optional argument (`nanocode chat --resume` = the most recent session).
_SESSION_ID = typer.Argument(None, metavar="[ID]", help="With --resume: the session to reload (default: the most "
                             "recent one). Sessions live in $NANOCODE_HOME/sessions.")
_MODEL = typer.Option(None, "--model", help="Model directory (default: $NANOCODE_MODEL, then the newest model "
                      "trained under $NANOCODE_HOME, then the one in checkpoints/).")
_ALLOW = typer.Option(None, "--allow", help="Tools that run without asking, e.g. --allow Read,Grep.")
_YES = typer.Option(False, "--yes", help="Run every tool call without asking (Edit and Bash included).")
_RESUME = typer.Option(False, "--resume", help="Reload a saved session: the given ID, else the most recent.")
_CWD = typer.Option(None, "--cwd", help="The repository to work in (default: the current directory).")
_MEMORY = typer.Option(None, "--memory/--no-memory", help="Read AGENTS.md / NANOCODE.md from the repository root "
                       "down to the working directory into the prompt (default: when the model was trained with "
                       "project notes in its prompts).")
_SANDBOX = typer.Option("on", "--sandbox", metavar="on|off", help="on (default): Bash runs in an OS sandbox "
                        "(writes only in the workspace and a private $TMPDIR, no network); off: with your full "
                        "access, e.g. for commands that need the network.")


@app.command()
def chat(session_id: Optional[str] = _SESSION_ID, model: Optional[Path] = _MODEL, allow: Optional[str] = _ALLOW,
         yes: bool = _YES, resume: bool = _RESUME,
         plain: bool = typer.Option(False, "--plain", help="A plain prompt-toolkit REPL instead of the "
                                    "full-screen app."),
         cwd: Optional[Path] = _CWD, sandbox: str = _SANDBOX, memory: Optional[bool] = _MEMORY):
    """Work with the model in a repository; it asks before every tool call."""
    from agent.setup import SetupError, prepare
    from nanocode.lookup import nanocode_home

    try:
        setup = prepare(model=model, cwd=cwd, allow=allow, yes=yes, resume=resume, session_id=session_id,
                        sandbox=sandbox, memory=memory)
    except SetupError as e:
        fail(str(e))
    history = nanocode_home() / "history"
    if plain:
        from agent.repl import run_repl
        run_repl(setup.load, model_name=setup.model_name, workspace=setup.workspace, notes=setup.notes,
                 history_path=history)
    else:
        from agent.app import run_app
        run_app(setup.load, model_name=setup.model_name, workspace=setup.workspace, history_path=history,
                notes=setup.notes)


@app.command("run")
def run_command(prompt: str = typer.Option(..., "-p", "--prompt", help="The request; '-' reads it from stdin."),
                json_lines: bool = typer.Option(False, "--json", help="Print every event as one JSON object per "
                                                "line instead of the final answer."),
                max_steps: int = typer.Option(20, "--max-steps", help="Most tool calls in the turn."),
                allow: Optional[str] = _ALLOW, yes: bool = _YES, model: Optional[Path] = _MODEL,
                cwd: Optional[Path] = _CWD, resume: bool = _RESUME, session_id: Optional[str] = _SESSION_ID,
                sandbox: str = _SANDBOX, memory: Optional[bool] = _MEMORY):
    """Run one request without a UI and print the answer.

    Calls that need approval (no --allow/--yes for them) are rejected and reported.
    Exit status: 0 done, 1 the turn ended early, 2 bad usage or no model, 130 interrupted."""
    import sys

    from agent.headless import run_headless
    from agent.setup import SetupError, prepare

    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        fail("the prompt is empty; pass the request with -p 'what does cli.py do?'")
    try:
        setup = prepare(model=model, cwd=cwd, allow=allow, yes=yes, resume=resume, session_id=session_id,
                        max_steps=max_steps, record_preferences=False, sandbox=sandbox, memory=memory)
        agent = setup.load()
    except SetupError as e:
        fail(str(e))
    if yes:
        typer.secho(setup.permissions.summary(), err=True, dim=True)
    if setup.memory_note:
        typer.secho(f"nanocode: {setup.memory_note}", err=True, dim=True)
    raise typer.Exit(run_headless(agent, prompt, json_lines=json_lines))



# --- bench chat (the agent's start-up) -----------------------------------------------------------

@bench_app.command("chat")
def bench_chat_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Model directory (default: the one chat would load)."),
    cwd: Path = typer.Option(Path("."), "--cwd", help="Workspace of the measured session."),
    prompt: str = typer.Option("where is main defined?", "--prompt", help="The request timed to its first text."),
    repeats: int = typer.Option(3, "--repeats", help="Fresh processes to time (the first may compile)."),
):
    """Start-up of `nanocode chat`: until the UI can draw, the model is ready, and Enter -> first text."""
    from agent.bench_startup import report, run

    try:
        report(run(str(model) if model else None, cwd, prompt, repeats))
    except RuntimeError as e:
        fail(str(e))


# --- data synth ----------------------------------------------------------------------------------

@data_app.command("synth")
def data_synth(n: int = typer.Option(3000, "--n", help="Conversations to generate (train + val)."),
               src: Optional[Path] = typer.Option(None, "--src", help="Take code from this directory of Python "
                                                  "files instead of the corpus."),
               corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus directory (default: "
                                                     "$NANOCODE_HOME/data/corpus; ignored with --src)."),
               out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: "
                                                  "$NANOCODE_HOME/data/synth)."),
               seed: int = typer.Option(0, "--seed", help="Same seed, same data (whatever the worker count)."),
               val_fraction: float = typer.Option(0.05, "--val-fraction", help="Share held out, from other files."),
               fault_rate: float = typer.Option(0.6, "--fault-rate", help="Share of first drafts with a seeded "
                                                "SOUL.md violation (each becomes a DPO pair)."),
               workers: int = typer.Option(0, "--workers", help="Processes (default: all cores)."),
               max_files: int = typer.Option(6000, "--max-files", help="Source files sampled into the pool."),
               generator_url: Optional[str] = typer.Option(None, "--generator-url", help="OpenAI-compatible "
                                                           "endpoint whose model writes the prose (optional)."),
               critic_url: Optional[str] = typer.Option(None, "--critic-url", help="OpenAI-compatible endpoint "
                                                        "whose model also judges drafts against SOUL.md (optional)."),
               llm_model: str = typer.Option("default", "--llm-model", help="Model name sent to those endpoints."),
               api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable "
                                               "holding the endpoints' API key, if they need one.")):
    """Synthetic tool-use conversations from real code through the real tools, critiqued against SOUL.md."""
    from nanocode.lookup import nanocode_home
    from training.common import StageError
    from training.synth.driver import SynthConfig, synth
    from training.synth.sources import SourceError

    home = nanocode_home()
    if src is None:
        corpus = corpus or home / "data" / "corpus"
        if not (corpus / "stats.json").is_file():
            fail(f"no complete corpus in {corpus}: run `nanocode data corpus` first, or pass --src DIR")
    cfg = SynthConfig(out=out or home / "data" / "synth", corpus=None if src else corpus, src=src, n=n, seed=seed,
                      val_fraction=val_fraction, fault_rate=fault_rate, workers=workers, max_files=max_files,
                      generator_url=generator_url, critic_url=critic_url, llm_model=llm_model,
                      api_key_env=api_key_env)
    step = max(1, n // 10)
    try:
        stats = synth(cfg, progress=lambda i, total: typer.echo(f"  {i}/{total}") if i % step == 0 else None)
    except (SourceError, ValueError, RuntimeError, StageError) as e:
        fail(str(e))
    conv, pairs = stats["conversations"], stats["pairs"]
    typer.echo(f"{conv['train']} train + {conv['val']} val conversations, {pairs['train']} + {pairs['val']} "
               f"preference pairs in {stats['seconds']} s -> {cfg.out}")
    typer.echo(f"families: {stats.get('family', {})}")
    typer.echo(f"seeded faults caught by the critic: {sum(stats.get('caught', {}).values())} of "
               f"{sum(stats.get('seeded', {}).values())}; HumanEval overlaps dropped: {stats.get('decontaminated', 0)}")
    if stats.get("llm", {}).get("error"):
        typer.secho(f"warning: the model endpoint failed {stats['llm']['error']} times; those examples kept the "
                    "template prose (see stats.json)", fg=typer.colors.YELLOW, err=True)


for _name, (_module, _help) in ROUTES[app].items():
    route(app, _name, _module, _help)


if __name__ == "__main__":
    app()
