"""`hrm data`: pull, validate and materialise SWE-smith task instances (a thin shell over hrm.data).

`data_app` is the `hrm data` group; other modules add commands to it (e.g. `hrm data synth`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hrm.cli.options import ParamsPath, Profile, load

data_app = typer.Typer(
    help="Ingest SWE-smith task instances (pull / materialise) and validate them with Great Expectations.",
    no_args_is_help=True,
)


@data_app.command("pull")
def pull_command(
    source: str | None = typer.Argument(
        None, help="hf:OWNER/NAME, a .jsonl/.json/.parquet file, or a directory (default: data.source)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Snapshot to write (default: data.snapshot)."),
    split: str | None = typer.Option(None, "--split", help="Hub split (default: data.split)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Keep at most this many rows."),
    repo: list[str] | None = typer.Option(None, "--repo", help="Keep rows whose repo/id contains this (repeatable)."),
    fmt: str | None = typer.Option(None, "--format", help="swe-smith (default) or swe-bench (convert SWE-bench rows)."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Read instances from the hub or local files into the raw snapshot (nothing is dropped)."""
    from pydantic import ValidationError

    from hrm.config import ConfigError
    from hrm.data.pull import pull

    params = load(params_path, profile)
    updates = {k: v for k, v in {"split": split, "limit": limit, "repo_filter": repo or None,
                                 "format": fmt}.items() if v is not None}
    # model_validate (not model_copy) so that a bad option value is rejected, naming it.
    try:
        cfg = type(params.data).model_validate({**params.data.model_dump(), **updates})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"hrm data pull options: {problems}") from None
    summary = pull(source or cfg.source, out or Path(cfg.snapshot), cfg)
    typer.echo(f"pull: {summary.rows} rows from {summary.source} -> {summary.snapshot}")
    for file, count in summary.per_file.items():
        typer.echo(f"  {file}: {count} rows")
    typer.echo(f"  schemas: {summary.schemas}")
    for empty in summary.empty_files:
        typer.secho(f"  warning: {empty} holds no row (empty, or blank lines only)",
                    fg=typer.colors.YELLOW, err=True)
    if summary.converted:
        typer.echo(f"  converted from SWE-bench: {summary.converted}")
    for line in summary.unreadable:
        typer.secho(f"  unreadable (kept, validation quarantines it): {line}", fg=typer.colors.YELLOW)
    for where in summary.swe_bench_refused:
        typer.secho(
            f"  SWE-bench row refused (its patch is the fix; use --format swe-bench to convert): {where}",
            fg=typer.colors.YELLOW,
        )


@data_app.command("validate")
def validate_command(
    snapshot: Path = typer.Option(Path("data/instances.jsonl"), "--snapshot", help="Raw snapshot to validate."),
    out: Path = typer.Option(Path("artifacts/validated"), "--out", help="Output directory."),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the summary to MLflow."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Validate the snapshot with the GX suite; quarantine invalid rows; fail above the threshold."""
    from hrm.data.validate import validate
    from hrm.errors import StepFailed

    params = load(params_path, profile)
    failure: StepFailed | None = None
    try:
        validate(snapshot, out, params.data, tracking=params if track else None)
    except StepFailed as err:
        failure = err  # outputs are written (and tracked): report them, then fail
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    typer.echo(
        f"validate: {summary['rows']} rows, {summary['valid']} valid, {summary['quarantined']} quarantined "
        f"({summary['invalid_fraction']:.1%}) -> {out}"
    )
    for check, count in summary["failures"].items():
        if count:
            typer.echo(f"  {check}: {count} rows")
    if failure is not None:
        raise failure


@data_app.command("materialise")
def materialise_command(
    source: str | None = typer.Option(
        None, "--source",
        help="Obtain from this source, replacing an existing snapshot (default: keep it, else data.source)."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Make sure data/instances.jsonl exists: keep it, dvc pull it, or produce it and dvc add it.

    With --source the snapshot is always obtained from that source (and replaces the old one).
    """
    from hrm.data.materialise import materialise

    result = materialise(load(params_path, profile), source=source or None)
    typer.echo(f"materialise: {result.message}")


def register(app: typer.Typer) -> None:
    """Add the `hrm data` group to the root app."""
    app.add_typer(data_app, name="data")
