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


# --- bench ---------------------------------------------------------------------------------------


# --- data ----------------------------------------------------------------------------------------


# --- train ---------------------------------------------------------------------------------------


# --- eval / report -------------------------------------------------------------------------------


if __name__ == "__main__":
    app()
