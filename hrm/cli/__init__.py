"""The `hrm` command line: one subcommand per pipeline step, each a thin shell over `hrm/`."""

from __future__ import annotations

import sys

import typer

from hrm.cli import (
    corpus,
    data,
    envs,
    evaluate,
    gate,
    pipeline,
    plots,
    predict,
    sequences,
    tokenizer,
    train,
)
from hrm.config import ConfigError
from hrm.errors import HrmError

app = typer.Typer(
    name="hrm",
    help="Train a Hierarchical Reasoning Model to repair Python bugs (SWE-smith) and gate it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for module in (data, envs, corpus, tokenizer, sequences, train, evaluate, gate, pipeline, predict,
               plots):
    module.register(app)


def main() -> None:
    """Entry point: user-facing errors become one clear line and exit code 2."""
    try:
        app()
    except (HrmError, ConfigError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
