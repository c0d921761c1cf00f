"""Submit a compiled pipeline to a Kubeflow Pipelines endpoint with `kfp.Client`, and
optionally wait for it to finish (`wait`) and summarise how it ended (`summarise_run`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm.errors import InputError

# Display names of the two gate branches (pipelines.hrm_pipeline); the one that succeeded
# tells the verdict, since KFP's run API does not return output parameters.
BRANCH_TASKS = ("promote", "flag")


@dataclass(frozen=True)
class SubmittedRun:
    """The run the KFP API server created."""

    run_id: str
    url: str


@dataclass(frozen=True)
class FinishedRun:
    """How a run ended: its final state, the gate branch that ran, every task's state."""

    run_id: str
    url: str
    state: str
    """KFP run state: SUCCEEDED, FAILED, CANCELED, ... or TIMEOUT when we stopped waiting."""

    branch: str | None
    """`promote` or `flag` (the gate verdict), or None when neither branch succeeded."""

    tasks: dict[str, str]
    """Task display name -> its final state."""

    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    def markdown(self) -> str:
        """The job-summary section: state, verdict, link, and any task that did not succeed."""
        verdict = {"promote": "PROMOTE", "flag": "FLAG"}.get(self.branch or "", "none (no gate branch ran)")
        lines = ["## Kubeflow run", "", f"- run: [{self.run_id}]({self.url})",
                 f"- final state: **{self.state}**", f"- gate verdict: **{verdict}**"]
        if self.error:
            lines.append(f"- error: {self.error}")
        bad = {k: v for k, v in self.tasks.items() if v not in ("SUCCEEDED", "SKIPPED")}
        if bad:
            lines += ["", "| task | state |", "|---|---|"]
            lines += [f"| {name} | {state} |" for name, state in sorted(bad.items())]
        return "\n".join(lines) + "\n"


def _state(value: Any) -> str:
    return str(value or "UNKNOWN").upper()


def summarise_run(run: Any, url: str) -> FinishedRun:
    """A `FinishedRun` from the API's run object (`kfp_server_api.V2beta1Run`)."""
    details = getattr(run, "run_details", None)
    tasks = {}
    for task in getattr(details, "task_details", None) or []:
        if task.display_name:
            tasks[task.display_name] = _state(task.state)
    branches = [b for b in BRANCH_TASKS if tasks.get(b) == "SUCCEEDED"]
    error = getattr(getattr(run, "error", None), "message", None)
    return FinishedRun(run_id=run.run_id, url=url, state=_state(run.state),
                       branch=branches[0] if len(branches) == 1 else None, tasks=tasks,
                       error=error or None)


def _client(host: str, namespace: str | None, existing_token: str | None):
    import kfp

    return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=existing_token)


def run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def wait(
    host: str,
    run_id: str,
    timeout_s: float,
    *,
    namespace: str | None = None,
    existing_token: str | None = None,
    poll_s: int = 30,
) -> FinishedRun:
    """Block until the run finishes (`kfp.Client.wait_for_run_completion`), or `timeout_s`
    passes: then the state is TIMEOUT (the run itself goes on in the cluster)."""
    client = _client(host, namespace, existing_token)
    url = run_url(host, run_id)
    try:
        run = client.wait_for_run_completion(run_id, timeout=int(timeout_s), sleep_duration=poll_s)
    except TimeoutError:
        return FinishedRun(run_id=run_id, url=url, state="TIMEOUT", branch=None, tasks={},
                           error=f"still running after {timeout_s:g} s (the run goes on)")
    return summarise_run(run, url)


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
    package = Path(package)
    if not package.is_file():
        raise InputError("compiled pipeline not found (run `hrm pipeline compile`)", path=str(package))
    client = _client(host, namespace, existing_token)
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
    )
    return SubmittedRun(run_id=result.run_id, url=run_url(host, result.run_id))
