"""`hrm sequences split` and `hrm sequences build`: thin shells over hrm.splits / hrm.sequences."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli import options

Track = typer.Option(True, "--track/--no-track", help="Log params and stats to MLflow.")


def split(
    instances: Path = typer.Option(..., "--instances", help="Validated instances JSONL."),
    out: Path = typer.Option(Path("artifacts/splits"), "--out", help="Output directory."),
    params_path: Path = options.ParamsPath,
    profile: str | None = options.Profile,
    track: bool = Track,
) -> None:
    """Assign instances to train/val/test, grouped by edited (repo, file, function)."""
    from hrm.splits import build_splits

    params = options.load(params_path, profile)
    stats = build_splits(instances, out, params.sequences, tracking=params if track else None)
    typer.echo(
        f"splits: train {stats['count_train']}, val {stats['count_val']}, test "
        f"{stats['count_test']} ({stats['groups']} groups, largest {stats['largest_group']}) "
        f"-> {out}"
    )
    for warning in stats["warnings"]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)

def build(
    instances: Path = typer.Option(..., "--instances", help="Validated instances JSONL."),
    splits: Path = typer.Option(..., "--splits", help="splits.json from `hrm sequences split`."),
    tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory."),
    corpus: Path = typer.Option(None, "--corpus", help="corpus.jsonl of `hrm corpus build` (the `corpus` split)."),
    out: Path = typer.Option(Path("artifacts/sequences"), "--out", help="Output directory."),
    params_path: Path = options.ParamsPath,
    profile: str | None = options.Profile,
    track: bool = Track,
) -> None:
    """Encode one fixed-length example per instance (and corpus row) into {split}.npz/.jsonl
    and meta.json: the buggy functions, labelled with their aligned edits."""
    from hrm.sequences import build_sequences

    params = options.load(params_path, profile)
    meta = build_sequences(instances, splits, tokenizer, out, params.sequences, corpus_path=corpus,
                           envs=params.envs, tracking=params if track else None)
    typer.echo(f"sequences: seq_len {meta.seq_len}, slots {meta.slots}, vocab {meta.vocab_size} "
               f"-> {out}")
    for s, n in meta.counts.items():
        dropped = {k: v for k, v in meta.dropped[s].items() if v}
        hunk_rows = meta.context[s].get("hunk", 0)
        t = meta.truncation[s]
        line = (f"  {s}: {n} rows; dropped {sum(dropped.values())} {dropped or ''}; "
                f"windowed {t['code_truncated']}, statement cut {t['statement_truncated']}"
                + (f"; {hunk_rows} with patch context only (no snapshot)" if hunk_rows else ""))
        typer.secho(line, fg=typer.colors.YELLOW if dropped or hunk_rows else None)


def register(app: typer.Typer) -> None:
    """Add `hrm sequences split|build` to the root app."""
    sub = typer.Typer(help="Train/val/test splits and fixed-length training sequences.",
                      no_args_is_help=True)
    sub.command("split")(split)
    sub.command("build")(build)
    app.add_typer(sub, name="sequences")
