"""`hrm envs build|check` and `hrm data synth`: thin shells over hrm.envs and hrm.synth."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from hrm.cli.options import ParamsPath, Profile, load

envs_app = typer.Typer(help="Repository environments: build them, check instances against them.",
                       no_args_is_help=True)


@envs_app.command("build")
def build_command(
    repo_id: str = typer.Argument(..., help="SWE-smith repo id, a key of envs.repos."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Build (or reuse) the cached pristine tree and venv of REPO_ID."""
    from hrm.envs import get_environment

    params = load(params_path, profile)
    env = get_environment(repo_id, params.envs)
    marker = json.loads((env.root / "marker.json").read_text())
    typer.echo(f"envs build: {repo_id} ready at {env.root} (fingerprint {env.fingerprint}, "
               f"built {marker['built_at']} in {marker['build_seconds']} s)")


@envs_app.command("check")
def check_command(
    instances: Path = typer.Option(..., "--instances", help="Instances JSONL (raw or validated)."),
    out: Path | None = typer.Option(None, "--out", help="Write per-instance results as JSON."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Check only the first N rows."),
    workers: int = typer.Option(1, "--workers", min=1, help="Instances checked at once."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Apply each bug, run FAIL_TO_PASS (must fail), revert, run again (must pass)."""
    from hrm.data.instance import read_instances
    from hrm.envs.check import check_instances

    params = load(params_path, profile)
    rows = read_instances(instances)[:limit]
    report = check_instances(rows, params.envs, workers=workers)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"counts": report.counts(),
                                   "checks": [asdict(c) for c in report.checks]}, indent=2))
    typer.echo(f"envs check: {len(rows)} instances, {report.applied} applied, "
               f"counts {report.counts()}")


def synth_command(
    out: Path = typer.Option(Path("data/instances.jsonl"), "--out", help="JSONL to write."),
    max_instances: int | None = typer.Option(None, "--max-instances", min=1),
    seed: int | None = typer.Option(None, "--seed"),
    time_budget_s: float | None = typer.Option(None, "--time-budget-s", min=1),
    workers: int | None = typer.Option(None, "--workers", min=1),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Generate SWE-smith-style instances by mutating each env of synth.envs (resumable)."""
    from hrm.synth import synthesize

    params = load(params_path, profile)
    updates = {k: v for k, v in {"max_instances": max_instances, "seed": seed,
                                 "time_budget_s": time_budget_s, "workers": workers}.items()
               if v is not None}
    params.synth = type(params.synth).model_validate({**params.synth.model_dump(), **updates})
    result = synthesize(params, out)
    for e in result.envs:
        typer.echo(f"synth {e.env}: kept {e.kept} of {e.tried} tried ({e.candidates} sites) "
                   f"in {e.elapsed_s} s, stopped by {e.stopped_by}; dropped {e.dropped}")
    typer.echo(f"synth: kept {result.kept} of {result.tried} tried in {len(result.envs)} "
               f"environments, {result.elapsed_s} s; isolation {result.isolation} -> "
               f"{result.out_path}")


def register(app: typer.Typer) -> None:
    """Add `hrm envs ...` to the root app and `synth` to the `hrm data` group."""
    from hrm.cli.data import data_app

    app.add_typer(envs_app, name="envs")
    data_app.command("synth")(synth_command)
