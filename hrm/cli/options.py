"""Options shared by every subcommand: which params file and which profile."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.config import Params, load_params

ParamsPath = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read.")
Profile = typer.Option(None, "--profile", help="Profile override (tiny|cpu|gpu); default: params.yaml.")


def load(params_path: Path, profile: str | None) -> Params:
    """Load the validated params once for a command."""
    return load_params(params_path, profile)
