"""`hrm pipeline`: compile the Kubeflow pipeline, run it locally with kfp.local, or submit it.

A thin shell over `pipelines/`; kfp is imported inside the commands so `hrm --help` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from hrm.cli.options import ParamsPath

pipeline_app = typer.Typer(
    help="Kubeflow Pipelines v2: compile, run locally (kfp.local), submit.", no_args_is_help=True
)

# The run's overrides: pipeline parameters of the same names (pipelines/hrm_pipeline.py).
EpochsScale = typer.Option(1.0, "--epochs-scale", help="Multiply every phase's epochs (rounded, >= 1).")
LrScale = typer.Option(1.0, "--lr-scale", help="Multiply every phase's peak learning rate.")
Criteria = typer.Option(
    "", "--criteria", help="JSON list of {metric, op, threshold, split}: replaces gate.criteria."
)


@pipeline_app.command("compile")
def compile_cmd(
    out: Path = typer.Option(Path("pipeline.yaml"), "--out", help="IR YAML to write."),
    params_path: Path = ParamsPath,
) -> None:
    """Compile the pipeline to KFP IR YAML (upload it in the KFP UI, or `hrm pipeline submit`)."""
    from pipelines.hrm_pipeline import compile_pipeline

    path = compile_pipeline(out, params_path)
    typer.echo(f"compiled {path}")


@pipeline_app.command("run-local")
def run_local_cmd(
    data: Path = typer.Option(..., "--data", help="JSONL of SWE-smith instances to run on."),
    out: Path = typer.Option(Path("artifacts/kfp-local"), "--out", help="Output directory."),
    params_path: Path = ParamsPath,
    profile: str = typer.Option("tiny", "--profile", help="Profile the tasks run with."),
    epochs_scale: float = EpochsScale,
    lr_scale: float = LrScale,
    criteria: str = Criteria,
) -> None:
    """Run the same pipeline with kfp.local (SubprocessRunner, this environment)."""
    from pipelines.local import run_local

    result = run_local(data, out, params_path, profile, epochs_scale=epochs_scale,
                       lr_scale=lr_scale, criteria_json=criteria)
    typer.echo(json.dumps({"branch": result.branch, "action": result.action,
                           "pipeline_root": result.pipeline_root}))


@pipeline_app.command("submit")
def submit_cmd(
    host: str = typer.Option(..., "--host", help="KFP API endpoint, e.g. https://kfp.example/pipeline."),
    package: Path = typer.Option(Path("pipeline.yaml"), "--package", help="Compiled IR YAML."),
    profile: str = typer.Option("gpu", "--profile", help="Profile the tasks run with."),
    data_source: str = typer.Option("", "--data-source", help="Overrides data.source."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow server for the tasks."),
    gpus: int = typer.Option(1, "--gpus", min=1, help="GPUs per training task (>1: torchrun)."),
    experiment: str = typer.Option("hrm-swe", "--experiment", help="KFP experiment name."),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubernetes namespace."),
    params_path: Path | None = typer.Option(
        None, "--params", help="Send this params.yaml as `params` (default: the compiled one)."
    ),
    epochs_scale: float = EpochsScale,
    lr_scale: float = LrScale,
    criteria: str = Criteria,
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish; exit 1 unless it succeeded."),
    timeout: float = typer.Option(
        6 * 3600, "--timeout", min=1, help="With --wait: stop waiting after this many seconds."
    ),
    summary: Path | None = typer.Option(
        None, "--summary", help="With --wait: append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."
    ),
) -> None:
    """Create a run of the compiled pipeline on a KFP cluster ($KFP_TOKEN: bearer token).

    With --wait, block until it finishes and print its final state and gate verdict.
    """
    from pipelines.submit import submit
    from pipelines.submit import wait as wait_for

    arguments: dict[str, object] = {"profile": profile, "gpus_per_task": gpus}
    if epochs_scale != 1.0:
        arguments["epochs_scale"] = epochs_scale
    if lr_scale != 1.0:
        arguments["lr_scale"] = lr_scale
    if criteria:
        arguments["criteria_json"] = criteria
    if data_source:
        arguments["data_source"] = data_source
    if tracking_uri:
        arguments["tracking_uri"] = tracking_uri
    if params_path is not None:
        from pipelines.hrm_pipeline import read_params_mapping

        arguments["params"] = json.dumps(read_params_mapping(params_path))
    token = os.environ.get("KFP_TOKEN") or None
    run = submit(package, host, arguments, experiment=experiment, namespace=namespace,
                 existing_token=token)
    typer.echo(json.dumps({"run_id": run.run_id, "url": run.url}))
    if not wait:
        return
    finished = wait_for(host, run.run_id, timeout, namespace=namespace, existing_token=token)
    typer.echo(json.dumps({"run_id": finished.run_id, "state": finished.state,
                           "branch": finished.branch}))
    if summary is not None:
        with summary.open("a", encoding="utf-8") as fh:
            fh.write(finished.markdown())
    if not finished.succeeded:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `hrm pipeline ...` to the root app."""
    app.add_typer(pipeline_app, name="pipeline")
