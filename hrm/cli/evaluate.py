"""`hrm evaluate`: a thin shell over `hrm.eval.evaluate.evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli.options import ParamsPath, Profile, load


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("evaluate")
    def evaluate_cmd(
        split: str = typer.Option("val", "--split", help="train, val (default) or test."),
        checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint file or directory."),
        tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory."),
        sequences: Path = typer.Option(..., "--sequences", help="Sequences directory."),
        out: Path = typer.Option(..., "--out", help="Output directory."),
        instances: Path | None = typer.Option(
            Path("artifacts/validated/instances.jsonl"), "--instances",
            help="Validated instances (patches, tests) for the execution tier."),
        no_instances: bool = typer.Option(False, "--no-instances",
                                          help="Skip the execution tier (reported per row)."),
        control: Path | None = typer.Option(
            None, "--control", help="The reverse-learning control (`hrm train-control --out`): "
            "reverse_learning_integration compares the model with it; without, the metric is "
            "not measured."),
        params_path: Path = ParamsPath,
        profile: str | None = Profile,
    ) -> None:
        """Score a checkpoint on a split: metrics.json, predictions.jsonl, report.md."""
        from hrm.eval.evaluate import evaluate

        params = load(params_path, profile)
        metrics = evaluate(params, checkpoint, tokenizer, sequences, split, out,
                           None if no_instances else instances, control_dir=control)
        typer.echo(f"{split}: " + ", ".join(
            f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)
            and k in ("exact_accuracy", "resolved_rate", "resolved_after_search", "token_accuracy_all")))

    @app.command("transfer")
    def transfer_cmd(
        external: Path = typer.Option(..., "--external",
                                      help="Instances from elsewhere, e.g. the real SWE-smith sample."),
        checkpoint: Path = typer.Option(Path("artifacts/train/refinement/checkpoints"), "--checkpoint",
                                        help="Checkpoint file or directory."),
        tokenizer: Path = typer.Option(Path("artifacts/tokenizer"), "--tokenizer", help="Tokenizer directory."),
        train_instances: Path = typer.Option(Path("artifacts/validated/instances.jsonl"), "--train-instances",
                                             help="The instances the model was trained on (all splits)."),
        splits: Path = typer.Option(Path("artifacts/splits/splits.json"), "--splits",
                                    help="Their splits: rows of the train split are the training data."),
        train_sequences: Path = typer.Option(Path("artifacts/sequences"), "--train-sequences",
                                             help="Training sequences (for the unigram baseline)."),
        out: Path = typer.Option(Path("artifacts/transfer"), "--out", help="Output directory."),
        no_tests: bool = typer.Option(False, "--no-tests", help="Skip the execution tier."),
        params_path: Path = ParamsPath,
        profile: str | None = Profile,
    ) -> None:
        """Score the model on instances it has not trained on (overlaps removed, listed in overlap.json)."""
        from hrm.eval.evaluate import evaluate
        from hrm.eval.transfer import TRANSFER_SPLIT, prepare_transfer

        params = load(params_path, profile)
        prep = prepare_transfer(external, train_instances, splits, tokenizer, out, params.sequences,
                                envs=params.envs)
        typer.echo(f"transfer: {prep.kept}/{prep.external} external instances kept "
                   f"({len(prep.dropped)} dropped as training data, {prep.same_function_as_train} of "
                   f"them for editing a function trained on: {out / 'overlap.json'}); "
                   f"{prep.sequence_rows} fit the sequences {prep.sequence_dropped or ''}")
        metrics = evaluate(params, checkpoint, tokenizer, out / "sequences", TRANSFER_SPLIT, out / "eval",
                           None if no_tests else out / "instances.jsonl",
                           train_sequences_dir=train_sequences, label="transfer")
        typer.echo("transfer: " + ", ".join(
            f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)
            and k in ("exact_accuracy", "resolved_rate", "resolved_after_search", "token_accuracy_all")))

