"""`hrm tokenizer build`: a thin shell over hrm.tokenizer.build_tokenizer."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli import options


def build(
    instances: Path = typer.Option(..., "--instances", help="Validated instances JSONL."),
    splits: Path = typer.Option(..., "--splits", help="splits.json (the tokenizer sees train only)."),
    corpus: Path = typer.Option(None, "--corpus", help="corpus.jsonl of `hrm corpus build` (also trained on)."),
    out: Path = typer.Option(Path("artifacts/tokenizer"), "--out", help="Output directory."),
    params_path: Path = options.ParamsPath,
    profile: str | None = options.Profile,
    track: bool = typer.Option(True, "--track/--no-track", help="Log params and stats to MLflow."),
) -> None:
    """Train the byte-level BPE on the train split (and the corpus); write tokenizer.json and
    meta.json."""
    from hrm.tokenizer import build_tokenizer

    params = options.load(params_path, profile)
    meta = build_tokenizer(instances, splits, out, params.tokenizer, corpus_path=corpus,
                           tracking=params if track else None)
    typer.echo(
        f"tokenizer: vocab {meta['vocab_size']} (requested {meta['requested_vocab_size']}), "
        f"trained on {meta['train_instances']} train instances and {meta['corpus_rows']} corpus "
        f"rows ({meta['training_chars']} chars) -> {out}"
    )


def register(app: typer.Typer) -> None:
    """Add `hrm tokenizer build` to the root app."""
    sub = typer.Typer(help="Byte-level BPE tokenizer.", no_args_is_help=True)
    sub.command("build")(build)
    app.add_typer(sub, name="tokenizer")
