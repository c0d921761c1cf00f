"""`hrm train`: one training phase (thin shell over hrm.train.run_phase)."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli import options


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("train")
    def train(
        phase: str = typer.Option(..., "--phase", help="Phase name from train.phases."),
        sequences: Path = typer.Option(..., "--sequences", help="Directory written by `hrm sequences build`."),
        tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory (fingerprinted)."),
        out: Path = typer.Option(..., "--out", help="Phase output directory."),
        resume_from: Path = typer.Option(None, "--resume-from", help="Previous phase's checkpoint file or dir."),
        resume: str = typer.Option("none", "--resume", help="none | auto | PATH: continue THIS phase."),
        track: bool = typer.Option(True, "--track/--no-track", help="Log to MLflow."),
        allow_config_change: bool = typer.Option(
            False, "--allow-config-change",
            help="With --resume: continue although the checkpoint's train settings differ."),
        params_path: Path = options.ParamsPath,
        profile: str = options.Profile,
    ) -> None:
        """Train one phase; writes checkpoints/, history.csv/json and summary.json under --out.

        Runs under `torchrun --nproc_per_node K` for data-parallel training."""
        from hrm.train.run import run_phase

        params = options.load(params_path, profile)
        result = run_phase(params, phase, sequences, tokenizer, out, resume_from=resume_from,
                           resume=resume, track=track, allow_config_change=allow_config_change)
        s = result.summary
        typer.echo(f"phase {phase}: {len(result.history)} epochs, loss={s.get('loss')}, "
                   f"token_accuracy={s.get('token_accuracy')}, checkpoint={result.checkpoint}")

    @app.command("train-control")
    def train_control(
        sequences: Path = typer.Option(..., "--sequences", help="Directory written by `hrm sequences build`."),
        tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory (fingerprinted)."),
        out: Path = typer.Option(..., "--out", help="Control directory (one subdirectory per phase)."),
        track: bool = typer.Option(True, "--track/--no-track", help="Log to MLflow."),
        params_path: Path = options.ParamsPath,
        profile: str = options.Profile,
    ) -> None:
        """Train the reverse-learning control: every phase, feedback path off, same data, seed
        and epochs; writes control.json (and nothing else when `train.reverse_control` is off)."""
        from hrm.train.control import train_control as run_control

        params = options.load(params_path, profile)
        record = run_control(params, sequences, tokenizer, out, track=track)
        if record.trained:
            typer.echo(f"control: {record.steps} steps, checkpoint={out / record.checkpoint}")
        else:
            typer.echo(f"control: not trained: {record.reason}")
