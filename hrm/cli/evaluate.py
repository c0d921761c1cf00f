"""`hrm evaluate`: a thin shell over `hrm.eval.evaluate.evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli.options import ParamsPath, Profile, load


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("evaluate")
    def evaluate_cmd(
        split: str = typer.Option(..., "--split", help="train, val or test."),
        checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint file or directory."),
        tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory."),
        sequences: Path = typer.Option(..., "--sequences", help="Sequences directory."),
        out: Path = typer.Option(..., "--out", help="Output directory."),
        instances: Path | None = typer.Option(
            Path("artifacts/validated/instances.jsonl"), "--instances",
            help="Validated instances (patches, tests) for the execution tier."),
        no_instances: bool = typer.Option(False, "--no-instances",
                                          help="Skip the execution tier (reported per row)."),
        params_path: Path = ParamsPath,
        profile: str | None = Profile,
    ) -> None:
        """Score a checkpoint on a split: metrics.json, predictions.jsonl, report.md."""
        from hrm.eval.evaluate import evaluate

        params = load(params_path, profile)
        metrics = evaluate(params, checkpoint, tokenizer, sequences, split, out,
                           None if no_instances else instances)
        typer.echo(f"{split}: " + ", ".join(
            f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)
            and k in ("loss", "token_accuracy_all", "code_tiered_accuracy", "resolved_rate")))
