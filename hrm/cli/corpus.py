"""`hrm corpus build`: a thin shell over hrm.corpus.build.build_corpus and its validation."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli import options


def build(
    out: Path = typer.Option(Path("artifacts/corpus"), "--out", help="Output directory."),
    params_path: Path = options.ParamsPath,
    profile: str | None = options.Profile,
    track: bool = typer.Option(True, "--track/--no-track", help="Log stats to MLflow."),
) -> None:
    """Mutate the functions of `corpus.packages` into corpus.jsonl, validate it (bad rows go to
    quarantine.jsonl with the reason) and write summary.json."""
    from hrm.corpus.build import corpus_step

    params = options.load(params_path, profile)
    summary, report = corpus_step(params, out, tracking=track)
    typer.echo(f"corpus: {summary.rows} rows from {len(summary.by_package)} packages "
               f"({summary.functions} functions, {summary.non_inferable} of kinds whose fix is "
               f"not in the input) in {summary.elapsed_s} s ({summary.rows_per_minute:.0f} "
               f"rows/min); valid {report['valid']}, quarantined {report['quarantined']} -> {out}")
    for kind, n in summary.by_kind.items():
        typer.echo(f"  {kind}: {n}")


def register(app: typer.Typer) -> None:
    """Add `hrm corpus build` to the root app."""
    sub = typer.Typer(help="The mutation corpus of the foundation phase.", no_args_is_help=True)
    sub.command("build")(build)
    app.add_typer(sub, name="corpus")
