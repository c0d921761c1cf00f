"""Submit a compiled pipeline to a Kubeflow Pipelines endpoint with `kfp.Client`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm.errors import InputError


@dataclass(frozen=True)
class SubmittedRun:
    """The run the KFP API server created."""

    run_id: str
    url: str


def submit(
    package: str | Path,
    host: str,
    arguments: dict[str, Any],
    *,
    experiment: str = "hrm-swe",
    run_name: str | None = None,
    namespace: str | None = None,
    existing_token: str | None = None,
) -> SubmittedRun:
    """Create a run of the compiled `package` on the KFP API at `host`.

    `existing_token` is a bearer token for clusters behind authentication (e.g. a service
    account token); the CLI reads it from $KFP_TOKEN rather than a command-line flag.
    """
    import kfp

    package = Path(package)
    if not package.is_file():
        raise InputError("compiled pipeline not found (run `hrm pipeline compile`)", path=str(package))
    client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=existing_token)
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
    )
    return SubmittedRun(run_id=result.run_id, url=f"{host.rstrip('/')}/#/runs/details/{result.run_id}")
