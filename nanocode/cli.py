"""The `nanocode` command. Every command imports its heavy modules inside its body so that
`nanocode --help` stays instant and training commands never import the UI libraries."""
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="nanocode: a small local coding agent and the stack that trains it.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train a model: tokenizer, base, sft, dpo, speedrun.", no_args_is_help=True)
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


@app.command()
def chat(session_id: Optional[str] = _SESSION_ID, model: Optional[Path] = _MODEL, allow: Optional[str] = _ALLOW,
         yes: bool = _YES, resume: bool = _RESUME,
         plain: bool = typer.Option(False, "--plain", help="A plain prompt-toolkit REPL instead of the "
                                    "full-screen app."),
         cwd: Optional[Path] = _CWD):
    """Work with the model in a repository; it asks before every tool call."""
    from agent.setup import SetupError, prepare
    from nanocode.lookup import nanocode_home

    try:
        setup = prepare(model=model, cwd=cwd, allow=allow, yes=yes, resume=resume, session_id=session_id)
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
                cwd: Optional[Path] = _CWD, resume: bool = _RESUME, session_id: Optional[str] = _SESSION_ID):
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
                        max_steps=max_steps, record_preferences=False)
        agent = setup.load()
    except SetupError as e:
        fail(str(e))
    if yes:
        typer.secho(setup.permissions.summary(), err=True, dim=True)
    raise typer.Exit(run_headless(agent, prompt, json_lines=json_lines))


# --- bench ---------------------------------------------------------------------------------------

@bench_app.command("sample")
def bench_sample_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="A model directory (default: a random-init model)."),
    depth: int = typer.Option(12, "--depth", help="Depth of the random-init model when no --model is given."),
    vocab: int = typer.Option(32768, "--vocab", help="Vocab size of the random-init model."),
    seq_len: int = typer.Option(2048, "--seq-len", help="Context length of the random-init model."),
    batch: int = typer.Option(1, "--batch", help="Prompts decoded together."),
    prompt_len: int = typer.Option(128, "--prompt-len", help="Prompt tokens."),
    new_tokens: int = typer.Option(256, "--new-tokens", help="Tokens generated per prompt."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs (the median is reported)."),
    unroll: str = typer.Option("1", "--unroll", help="Decode steps per loop iteration; a comma list compares."),
    chunk: int = typer.Option(16, "--chunk", help="Tokens per device call when streaming."),
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
):
    """Sampling speed: time to first token, prefill and decode tok/s, bandwidth on GPU."""
    from nanocode.bench_sample import run
    try:
        unrolls = tuple(int(u) for u in unroll.split(","))
    except ValueError:
        fail(f"--unroll {unroll!r}: give integers separated by commas, e.g. 1,4")
    if model is None and depth < 1:
        fail(f"--depth {depth}: give a positive depth")
    try:
        run(str(model) if model else None, depth, vocab, seq_len, batch, prompt_len, new_tokens, repeats,
            unrolls, chunk, json_lines)
    except Exception as e:  # a bad model directory or sizes: say what, without a traceback
        from nanocode.checkpoint import CheckpointError
        if isinstance(e, (CheckpointError, ValueError)):
            fail(str(e))
        raise


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


@bench_app.command("train")
def bench_train_cmd(
    depth: str = typer.Option("12", "--depth", help="Model depth; a comma list compares (e.g. 12,20)."),
    batch: str = typer.Option("32", "--batch", help="Sequences per device; a comma list compares."),
    seq: str = typer.Option("2048", "--seq", help="Sequence length; a comma list compares."),
    vocab: int = typer.Option(32768, "--vocab", help="Vocabulary size of the random-init model."),
    steps: int = typer.Option(10, "--steps", help="Timed optimiser steps (after two warm-up steps)."),
    remat: str = typer.Option("none", "--remat", help="none, dots or full; a comma list compares."),
    fsdp: bool = typer.Option(False, "--fsdp/--no-fsdp", help="Shard parameters and optimiser state."),
    breakdown: bool = typer.Option(False, "--breakdown", help="Also time forward, backward and optimiser alone."),
    profile: bool = typer.Option(False, "--profile", help="Print the kernels/ops that take the most time."),
    matmul_dtype: str = typer.Option("auto", "--matmul-dtype", help="The matmuls' input dtype: auto, float32, "
                                     "bfloat16; a comma list compares."),
    repeat: int = typer.Option(1, "--repeat", help="Run the whole table this many times, round-robin."),
):
    """Training throughput on random tokens: tok/s, model TFLOP/s, MFU, memory."""
    from training.bench_train import run

    try:
        depths, batches, seqs = ([int(x) for x in v.split(",")] for v in (depth, batch, seq))
    except ValueError:
        fail("--depth, --batch and --seq take integers, optionally comma-separated (e.g. --depth 12,20)")
    remats, matmuls = remat.split(","), matmul_dtype.split(",")
    bad = [r for r in remats if r not in ("none", "dots", "full")]
    bad_mm = [m for m in matmuls if m not in ("auto", "float32", "bfloat16")]
    if bad or bad_mm or min(depths + batches + seqs) < 1 or steps < 1 or repeat < 1:
        fail(f"--remat takes none, dots or full (got {bad}); --matmul-dtype auto, float32 or bfloat16 (got "
             f"{bad_mm}); --depth/--batch/--seq/--steps/--repeat must be positive")
    rows = run(depths, batches, seqs, vocab, steps, remats, fsdp=(fsdp,), breakdown=breakdown, profile=profile,
               matmul=matmuls, repeat=repeat)
    if any("error" in r for r in rows):
        raise typer.Exit(1)


# --- data ----------------------------------------------------------------------------------------

def _size(text: str) -> int:
    """'500M', '2G', '12345' -> bytes (for byte budgets)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError:
        fail(f"{text!r} is not a size; write e.g. 500M, 2G or 12345")


@data_app.command("corpus")
def data_corpus(src: Optional[list[Path]] = typer.Option(None, "--src", help="A directory of code to add "
                                                         "(repeatable)."),
                out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: "
                                                   "$NANOCODE_HOME/data/corpus)."),
                only_src: bool = typer.Option(False, "--only-src", help="Skip the default sources (this Python's "
                                              "stdlib and site-packages): use only the --src directories."),
                licenses: str = typer.Option("all", "--licenses", help="all | permissive (MIT, BSD, Apache, "
                                             "PSF, ISC, ...)."),
                repo_fraction: float = typer.Option(0.1, "--repo-fraction", help="Fraction of packages written as "
                                                    "one repository-level document in import order."),
                val_fraction: float = typer.Option(0.01, "--val-fraction", help="Fraction of code documents held "
                                                   "out for validation (prose: 10x, at most 0.5)."),
                max_bytes: Optional[str] = typer.Option(None, "--max-bytes", help="Read at most this much source "
                                                        "(a reproducible random sample of files), e.g. 50M."),
                workers: int = typer.Option(0, "--workers", help="Processes (default: all cores).")):
    """Collect, clean, deduplicate and split code already on disk (no network)."""
    import os

    from nanocode.lookup import nanocode_home
    from training.data.corpus import CorpusConfig, build_corpus, default_sources, directory_sources, print_stats

    if only_src and not src:
        fail("--only-src needs at least one --src DIR")
    if not 0 <= val_fraction < 1 or not 0 <= repo_fraction <= 1:
        fail("--val-fraction must be in [0, 1) and --repo-fraction in [0, 1]")
    try:
        sources = ([] if only_src else default_sources()) + directory_sources(list(src or []))
        config = CorpusConfig(sources=tuple(sources), out=out or nanocode_home() / "data" / "corpus",
                              licenses=licenses, repo_fraction=repo_fraction, val_fraction=val_fraction,
                              prose_val_fraction=min(0.5, 10 * val_fraction),
                              max_bytes=_size(max_bytes) if max_bytes else None, workers=workers or os.cpu_count() or 1)
        stats = build_corpus(config)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    print_stats(stats)
    typer.echo(f"corpus written to {config.out}")


@data_app.command("shards")
def data_shards(corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus directory (default: "
                                                      "$NANOCODE_HOME/data/corpus)."),
                tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="tokenizer.json or its directory "
                                                         "(default: $NANOCODE_HOME/tokenizer)."),
                out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: "
                                                   "$NANOCODE_HOME/data/tokens).")):
    """Tokenize the corpus into flat token shards for pretraining."""
    from nanocode.lookup import nanocode_home
    from nanocode.tokenizer import TokenizerError
    from training.data.shards import tokenize_corpus

    home = nanocode_home()
    out = out or home / "data" / "tokens"
    try:
        meta = tokenize_corpus(corpus or home / "data" / "corpus", tokenizer or home / "tokenizer", out)
    except TokenizerError as e:
        fail(f"{e} (train one with `nanocode train tokenizer`, or pass --tokenizer)")
    except FileNotFoundError as e:
        fail(str(e))
    for split, entry in meta["splits"].items():
        typer.echo(f"{split}: {entry['n_docs']:,} documents, {entry['n_tokens']:,} tokens "
                   f"({entry['n_bytes'] / max(1, entry['n_tokens']):.2f} bytes/token)")
    typer.echo(f"token shards ({meta['dtype']}) written to {out}")


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
    except (SourceError, ValueError, RuntimeError) as e:
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



# --- train ---------------------------------------------------------------------------------------

@train_app.command("tokenizer")
def train_tokenizer_command(vocab: int = typer.Option(32768, "--vocab", help="Vocabulary size, special tokens "
                                                      "included (a few hundred for tests, up to 65536)."),
                            corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus directory "
                                                                  "(default: $NANOCODE_HOME/data/corpus)."),
                            out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: "
                                                               "$NANOCODE_HOME/tokenizer)."),
                            max_bytes: str = typer.Option("1G", "--max-bytes", help="Train on at most this much "
                                                          "text (a reproducible sample), e.g. 200M."),
                            baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also train a "
                                                          "GPT-4-split tokenizer to compare compression with.")):
    """Train the byte-level BPE code tokenizer and report its compression."""
    from nanocode.lookup import nanocode_home
    from training.data.tokenizer_train import print_report, train_tokenizer

    out = out or nanocode_home() / "tokenizer"
    try:
        report = train_tokenizer(corpus or nanocode_home() / "data" / "corpus", out, vocab, _size(max_bytes),
                                 baseline=baseline)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    print_report(report)
    typer.echo(f"tokenizer written to {out / 'tokenizer.json'}")


_COORDINATOR = typer.Option(None, "--coordinator", help="Multi-host: host:port of process 0 (or $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = typer.Option(None, "--num-processes", help="Multi-host: number of processes.")
_PROCESS_ID = typer.Option(None, "--process-id", help="Multi-host: this process's index.")
_SAVE_EVERY = typer.Option(None, "--save-every", help="Steps between checkpoints.")
_REMAT = typer.Option(None, "--remat", help="none, dots or full: trade compute for memory.")
_FSDP = typer.Option(None, "--fsdp/--no-fsdp", help="Shard parameters and optimiser state over the devices "
                     "(for models that do not fit one).")


@train_app.command("base")
def train_base_command(
    preset: Optional[str] = typer.Option(None, "--preset", help="test (seconds), cpu (~10 min on a laptop), gpu "
                                         "(one GPU); default: gpu when JAX sees an accelerator, else cpu."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Model depth; sets the width and, on token-budget "
                                        "presets, the number of steps (default: the preset's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: $NANOCODE_HOME/runs/base-d{depth}); "
                                       "rerun the same command on it to resume."),
    data: Optional[Path] = typer.Option(None, "--data", help="Token shards (default: $NANOCODE_HOME/data/tokens)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="tokenizer.json or its directory "
                                             "(default: $NANOCODE_HOME/tokenizer)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (default: the preset's budget)."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Context length of the training rows."),
    device_batch: Optional[int] = typer.Option(None, "--device-batch", help="Sequences per device per micro-step."),
    total_batch: Optional[int] = typer.Option(None, "--total-batch", help="Tokens per optimiser step (all devices; "
                                              "gradient accumulation makes up the difference)."),
    matrix_lr: Optional[float] = typer.Option(None, "--matrix-lr", help="Muon learning rate."),
    embedding_lr: Optional[float] = typer.Option(None, "--embedding-lr", help="AdamW learning rate of the embedding."),
    unembedding_lr: Optional[float] = typer.Option(None, "--unembedding-lr", help="AdamW learning rate of the head."),
    fim_rate: Optional[float] = typer.Option(None, "--fim-rate", help="Fraction of documents in FIM form."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Steps between validation bits/byte."),
    save_every: Optional[int] = _SAVE_EVERY,
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Steps between samples (0: at the end)."),
    remat: Optional[str] = _REMAT,
    residual_dtype: Optional[str] = typer.Option(None, "--residual-dtype", help="auto (the compute dtype: bf16 "
                                                 "on GPU), float32 or bfloat16."),
    matmul_dtype: Optional[str] = typer.Option(None, "--matmul-dtype", help="The matmuls' input dtype: auto (bf16 "
                                               "on GPU, and on CPUs with bf16 dot instructions), float32 or "
                                               "bfloat16."),
    fsdp: Optional[bool] = _FSDP,
    seed: Optional[int] = typer.Option(None, "--seed", help="Initialisation and data-order seed."),
    coordinator: Optional[str] = _COORDINATOR, num_processes: Optional[int] = _NUM_PROCESSES,
    process_id: Optional[int] = _PROCESS_ID,
):
    """Pretrain a base model on the token shards (resumable: rerun the same command after a crash)."""
    import os

    from training.config import TrainConfigError, from_preset
    from training.pretrain import TrainError, train_base

    if preset is None:
        multi_host = coordinator or num_processes or os.environ.get("JAX_COORDINATOR_ADDRESS")
        if multi_host:  # asking JAX for its backend now would start it before jax.distributed can
            preset = "gpu"
        else:
            import jax
            preset = "cpu" if jax.default_backend() == "cpu" else "gpu"
    try:
        cfg = from_preset(preset, depth=depth, steps=steps, seq_len=seq_len, device_batch=device_batch,
                          total_batch=total_batch, matrix_lr=matrix_lr, embedding_lr=embedding_lr,
                          unembedding_lr=unembedding_lr, fim_rate=fim_rate, eval_every=eval_every,
                          save_every=save_every, sample_every=sample_every, remat=remat,
                          residual_dtype=residual_dtype, matmul_dtype=matmul_dtype, fsdp=fsdp, seed=seed)
        train_base(cfg, out, data, tokenizer, coordinator, num_processes, process_id)
    except (TrainError, TrainConfigError) as e:
        fail(str(e))


@train_app.command("sft")
def train_sft_command(
    preset: str = typer.Option("cpu", "--preset", help="test (seconds), cpu (a laptop), gpu (one GPU)."),
    base: Optional[Path] = typer.Option(None, "--base", help="Base model directory (default: the newest "
                                        "$NANOCODE_HOME/runs/base-*/model)."),
    data: Optional[Path] = typer.Option(None, "--data", help="`nanocode data synth` output (default: "
                                        "$NANOCODE_HOME/data/synth)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: $NANOCODE_HOME/runs/sft-d{depth}); "
                                       "rerun the same command on it to resume."),
    tokens: Optional[Path] = typer.Option(None, "--tokens", help="Pretraining token shards for the replay rows "
                                          "(default: $NANOCODE_HOME/data/tokens)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (default: from --epochs)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the conversations."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Row length (default: the model's context)."),
    device_batch: Optional[int] = typer.Option(None, "--device-batch", help="Rows per device per micro-step."),
    batch_rows: Optional[int] = typer.Option(None, "--batch-rows", help="Rows per optimiser step, all devices."),
    lr_frac: Optional[float] = typer.Option(None, "--lr-frac", help="Learning rates as a fraction of the base ones."),
    replay: Optional[float] = typer.Option(None, "--replay", help="Share of rows from pretraining data (code, FIM)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Steps between validation loss and "
                                             "tool-call validity."),
    eval_samples: Optional[int] = typer.Option(None, "--eval-samples", help="Held-out requests sampled per eval."),
    save_every: Optional[int] = _SAVE_EVERY,
    remat: Optional[str] = _REMAT,
    fsdp: Optional[bool] = _FSDP,
    seed: Optional[int] = typer.Option(None, "--seed", help="Data-order seed."),
    coordinator: Optional[str] = _COORDINATOR, num_processes: Optional[int] = _NUM_PROCESSES,
    process_id: Optional[int] = _PROCESS_ID,
):
    """Supervised fine-tuning on tool-use conversations (loss on the assistant's tokens only; resumable)."""
    from training.config import TrainConfigError
    from training.sft import SFTError, from_preset, train_sft

    try:
        cfg = from_preset(preset, steps=steps, epochs=epochs, seq_len=seq_len, device_batch=device_batch,
                          batch_rows=batch_rows, lr_frac=lr_frac, replay=replay, eval_every=eval_every,
                          eval_samples=eval_samples, save_every=save_every, remat=remat, fsdp=fsdp, seed=seed)
        train_sft(cfg, base, data, out, tokens, coordinator, num_processes, process_id)
    except (SFTError, TrainConfigError) as e:
        fail(str(e))


@train_app.command("dpo")
def train_dpo_command(
    preset: str = typer.Option("cpu", "--preset", help="test (seconds), cpu (a laptop), gpu (one GPU)."),
    sft: Optional[Path] = typer.Option(None, "--sft", help="SFT model directory: the policy's start and the frozen "
                                       "reference (default: the newest $NANOCODE_HOME/runs/sft-*/model)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Directory with pairs_train.jsonl and pairs_val.jsonl "
                                        "(default: $NANOCODE_HOME/data/synth)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: $NANOCODE_HOME/runs/dpo-d{depth}); "
                                       "rerun the same command on it to resume."),
    from_sessions: Optional[bool] = typer.Option(None, "--from-sessions/--no-sessions", help="Add the rejections "
                                                 "recorded in chat sessions as pairs."),
    sessions: Optional[Path] = typer.Option(None, "--sessions", help="Where the session preference records are "
                                            "(default: $NANOCODE_HOME/sessions/preferences)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="DPO beta: how far the policy may move from the reference."),
    nll: Optional[float] = typer.Option(None, "--nll", help="Weight of the chosen replies' per-token NLL added to the "
                                        "DPO loss (RPO; keeps their tool calls likely); 0: plain DPO."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (default: from --epochs)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the pairs."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Row length (default: the model's context)."),
    device_batch: Optional[int] = typer.Option(None, "--device-batch", help="Pairs per device per micro-step."),
    batch_pairs: Optional[int] = typer.Option(None, "--batch-pairs", help="Pairs per optimiser step, all devices."),
    lr_frac: Optional[float] = typer.Option(None, "--lr-frac", help="Learning rates as a fraction of the base ones."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Steps between held-out preference metrics."),
    save_every: Optional[int] = _SAVE_EVERY,
    remat: Optional[str] = _REMAT,
    fsdp: Optional[bool] = _FSDP,
    seed: Optional[int] = typer.Option(None, "--seed", help="Data-order seed."),
    coordinator: Optional[str] = _COORDINATOR, num_processes: Optional[int] = _NUM_PROCESSES,
    process_id: Optional[int] = _PROCESS_ID,
):
    """Direct preference optimisation toward SOUL.md from the SFT model (frozen reference; resumable)."""
    from training.config import TrainConfigError
    from training.dpo import from_preset, train_dpo
    from training.sft import SFTError

    try:
        cfg = from_preset(preset, beta=beta, nll=nll, steps=steps, epochs=epochs, seq_len=seq_len,
                          device_batch=device_batch, batch_pairs=batch_pairs, lr_frac=lr_frac, eval_every=eval_every, save_every=save_every,
                          remat=remat, fsdp=fsdp, seed=seed, from_sessions=from_sessions)
        train_dpo(cfg, sft, data, out, sessions, coordinator, num_processes, process_id)
    except (SFTError, TrainConfigError) as e:
        fail(str(e))


@train_app.command("speedrun")
def train_speedrun_command(
    preset: str = typer.Option("cpu", "--preset", help="test (seconds), cpu (this laptop, ~30 min), gpu (one GPU, "
                               "~15 min on an H200)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: "
                                       "$NANOCODE_HOME/runs/speedrun-<preset>); rerun the same command on it to "
                                       "continue after a kill."),
):
    """Every stage in one go: corpus, tokenizer, shards, base, synth, SFT, DPO, eval, report (each skipped when done)."""
    from training.speedrun import SpeedrunError, speedrun

    try:
        speedrun(preset, out)
    except SpeedrunError as e:
        fail(str(e))
    except KeyboardInterrupt:
        typer.secho("interrupted; rerun the same command to continue", err=True)
        raise typer.Exit(130)


# --- eval / report -------------------------------------------------------------------------------
# Every `nanocode eval X --model DIR` prints a table and writes DIR/eval/X.json; `nanocode report` collects them.

_EVAL_MODEL = typer.Option(None, "--model", help="Model directory (default: $NANOCODE_MODEL, then the newest "
                           "model under $NANOCODE_HOME, then the one in checkpoints/).")
_SEED = typer.Option(0, "--seed", help="Seed of the sampling and of the generated tasks.")


def _eval_model_dir(model: Optional[Path]) -> Path:
    from nanocode.lookup import CheckpointError, find_model
    try:
        return find_model(model)
    except CheckpointError as e:
        fail(str(e))


def _eval_load(model_dir: Path):
    """(model, tokenizer, info) with the persistent compilation cache on."""
    from nanocode import runtime
    from nanocode.checkpoint import CheckpointError, load_model
    runtime.setup_jax()
    try:
        return load_model(model_dir)
    except CheckpointError as e:
        fail(str(e))


def _eval_finish(model_dir: Path, name: str, result: dict, summary_table) -> None:
    from training.eval.results import print_table, write_result
    print_table(summary_table(result))
    typer.echo(f"wrote {write_result(model_dir, name, result)}")


def _progress(total: int, what: str):
    """A rich progress bar on stderr and the callback that advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True))
    task = bar.add_task(what, total=total)
    return bar, lambda *_: bar.advance(task)


@eval_app.command("bpb")
def eval_bpb(model: Optional[Path] = _EVAL_MODEL,
             data: Optional[Path] = typer.Option(None, "--data", help="Token shards (from `nanocode data shards`; "
                                                 "default: those the model's run trained on, else "
                                                 "$NANOCODE_HOME/data/tokens)."),
             max_tokens: int = typer.Option(2_097_152, "--max-tokens", help="Validation tokens per kind."),
             batch_rows: int = typer.Option(8, "--batch-rows", help="Sequences per forward pass.")):
    """Bits per byte on the validation split, code and prose separately."""
    from training.eval import bpb as eb

    if max_tokens < 1 or batch_rows < 1:
        fail("--max-tokens and --batch-rows must be >= 1")
    model_dir = _eval_model_dir(model)
    token_dir = data or eb.default_token_dir(model_dir)
    net, tok, _ = _eval_load(model_dir)
    try:
        result = eb.evaluate(net, tok, model_dir, token_dir, max_tokens=max_tokens, batch_rows=batch_rows)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    _eval_finish(model_dir, "bpb", result, eb.summary_table)


@eval_app.command("humaneval")
def eval_humaneval(model: Optional[Path] = _EVAL_MODEL,
                   samples: int = typer.Option(1, "--samples", help="Completions per problem (n of pass@k)."),
                   k: Optional[list[int]] = typer.Option(None, "--k", help="pass@k to report, repeatable "
                                                         "(default: 1, and 10 and 100 when --samples allows)."),
                   limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N problems."),
                   mode: str = typer.Option("auto", "--mode", help="chat (ask in a user turn), base (plain "
                                            "completion), or auto (from the model's training stage)."),
                   temperature: Optional[float] = typer.Option(None, "--temperature", help="Default: 0 (greedy) "
                                                               "for one sample, 0.8 for several."),
                   top_p: Optional[float] = typer.Option(None, "--top-p"),
                   max_new_tokens: int = typer.Option(384, "--max-new-tokens"),
                   batch_size: int = typer.Option(16, "--batch-size", help="Prompts sampled together."),
                   timeout: float = typer.Option(10.0, "--timeout", help="Seconds each sample may run (wall "
                                                 "clock and CPU)."),
                   memory_mb: int = typer.Option(1024, "--memory-mb", help="Address-space limit per sample."),
                   workers: Optional[int] = typer.Option(None, "--workers", help="Samples run in parallel "
                                                         "(default: the CPU count)."),
                   seed: int = _SEED):
    """pass@k on the 164 HumanEval problems, every sample executed in a sandbox."""
    from training.eval import humaneval as he
    from training.eval.sandbox import Limits

    if samples < 1 or batch_size < 1 or (limit is not None and limit < 1) or timeout <= 0 or memory_mb < 64:
        fail("--samples, --batch-size and --limit must be >= 1, --timeout > 0 and --memory-mb >= 64")
    if (top_p is not None and not 0 < top_p <= 1) or (temperature is not None and temperature < 0):
        fail("--top-p must be in (0, 1] and --temperature >= 0")
    ks = tuple(k) if k else tuple(x for x in (1, 10, 100) if x <= samples)
    if any(not 1 <= x <= samples for x in ks):
        fail(f"every --k must be between 1 and --samples ({samples}); got {list(ks)}")
    if mode not in ("auto", "chat", "base"):
        fail(f"--mode must be chat, base or auto, not {mode!r}")
    model_dir = _eval_model_dir(model)
    net, tok, info = _eval_load(model_dir)
    if mode == "auto":
        stage = str(info.get("meta", {}).get("stage", ""))
        mode = "base" if stage in ("base", "pretrain") else "chat"
        typer.secho(f"mode: {mode} (the model's training stage is {stage or 'not recorded'})", err=True, dim=True)
    if temperature is None:
        temperature = 0.0 if samples == 1 else 0.8
    from nanocode.sampler import Sampler
    problems = he.load_problems(limit)
    limits = Limits(timeout_s=timeout, cpu_s=max(1, round(timeout)), memory_mb=memory_mb)
    result = he.evaluate(Sampler(net), tok, problems, mode=mode, samples=samples, ks=ks, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                         limits=limits, workers=workers)
    _eval_finish(model_dir, "humaneval", result, he.summary_table)


@eval_app.command("agent")
def eval_agent(model: Optional[Path] = _EVAL_MODEL,
               per_kind: int = typer.Option(3, "--per-kind", help="Tasks of each kind."),
               kinds: Optional[str] = typer.Option(None, "--kinds", help="Comma-separated subset of: locate, "
                                                   "answer, rename, edit, create, run."),
               max_steps: int = typer.Option(12, "--max-steps", help="Most tool calls per task."),
               max_reply_tokens: int = typer.Option(512, "--max-reply-tokens"),
               temperature: float = typer.Option(0.0, "--temperature"),
               seed: int = _SEED):
    """Agentic tasks in temporary workspaces through the real agent loop, every call approved."""
    from agent.source import SamplerSource
    from nanocode.sampler import Sampler
    from training.eval import agent_tasks, agent as ea

    if max_steps < 1 or max_reply_tokens < 1 or temperature < 0:
        fail("--max-steps and --max-reply-tokens must be >= 1 and --temperature >= 0")
    try:
        chosen = tuple(x.strip() for x in kinds.split(",") if x.strip()) if kinds else agent_tasks.KINDS
        tasks = agent_tasks.make_suite(per_kind, seed, chosen)
    except ValueError as e:
        fail(str(e))
    model_dir = _eval_model_dir(model)
    net, tok, _ = _eval_load(model_dir)
    source = SamplerSource(Sampler(net), context_len=net.config.seq_len, seed=seed)
    typer.secho(f"{len(tasks)} tasks; tool calls run in temporary workspaces WITHOUT asking", err=True, dim=True)
    bar, advance = _progress(len(tasks), "agent tasks")
    with bar:
        result = ea.evaluate(tasks, lambda task: source, tok, max_steps=max_steps,
                             max_reply_tokens=max_reply_tokens, temperature=temperature, progress=advance)
    _eval_finish(model_dir, "agent", result, ea.summary_table)


@eval_app.command("soul")
def eval_soul(model: Optional[Path] = _EVAL_MODEL,
              samples: int = typer.Option(1, "--samples", help="Replies per request."),
              temperature: Optional[float] = typer.Option(None, "--temperature", help="Default: 0 (greedy, as "
                                                          "chat samples) for one reply, 0.7 for several."),
              max_steps: int = typer.Option(8, "--max-steps"),
              seed: int = _SEED):
    """The share of sampled replies that keep each SOUL.md rule."""
    from agent.source import SamplerSource
    from nanocode.sampler import Sampler
    from training.eval import soul as es

    if samples < 1 or max_steps < 1 or (temperature is not None and temperature < 0):
        fail("--samples and --max-steps must be >= 1 and --temperature >= 0")
    model_dir = _eval_model_dir(model)
    net, tok, _ = _eval_load(model_dir)
    source = SamplerSource(Sampler(net), context_len=net.config.seq_len, seed=seed)
    if temperature is None:
        temperature = 0.0 if samples == 1 else 0.7
    bar, advance = _progress(len(es.PROMPTS) * samples, "soul replies")
    with bar:
        result = es.evaluate(lambda prompt: source, tok, samples=samples, seed=seed, temperature=temperature,
                             max_steps=max_steps, progress=advance)
    _eval_finish(model_dir, "soul", result, es.summary_table)


@eval_app.command("tokenizer")
def eval_tokenizer(model: Optional[Path] = _EVAL_MODEL,
                   data: Optional[Path] = typer.Option(None, "--data", help="Corpus directory (from `nanocode "
                                                       "data corpus`; default: the one behind the model's training "
                                                       "shards, else $NANOCODE_HOME/data/corpus)."),
                   max_mb: float = typer.Option(8.0, "--max-mb", help="Validation text per kind, in MB."),
                   split: str = typer.Option("val", "--split")):
    """Bytes per token of the model's tokenizer on validation code and prose."""
    from nanocode.tokenizer import Tokenizer, TokenizerError
    from training.eval import tokenizer as et

    model_dir = _eval_model_dir(model)
    try:
        tok = Tokenizer.load(model_dir)
        result = et.evaluate(tok, data or et.default_corpus_dir(model_dir), split, int(max_mb * 1e6))
    except (TokenizerError, FileNotFoundError) as e:
        fail(str(e))
    _eval_finish(model_dir, "tokenizer", result, et.summary_table)


@app.command("report")
def report(run_dir: Optional[Path] = typer.Argument(None, help="The run directory (default: the newest under "
                                                    "$NANOCODE_HOME/runs).")):
    """Write RUN_DIR/report/report.md and a self-contained report.html: config, data, curves, evals, card."""
    from training.report import ReportError, write_report

    try:
        md_path, html_path = write_report(run_dir)
    except ReportError as e:
        fail(str(e))
    typer.echo(f"wrote {md_path}\nwrote {html_path}")


if __name__ == "__main__":
    app()
