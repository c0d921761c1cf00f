"""MLflow tracking: one parent run per pipeline run, one nested run per step.

Steps run as separate processes (DVC stages, KFP tasks), so the parent run is found by a
tag, `hrm.pipeline_key`, rather than passed in memory. The key is $HRM_PIPELINE_RUN when set
(KFP sets it to its run id), else a fingerprint of the resolved params and the raw snapshot
(`data.snapshot`, the one input every stage descends from), so that every stage of one
`dvc repro` lands under the same parent run.

Every run carries where it came from (`provenance_tags`: git commit and dirty flag, the data
version from the snapshot's `.dvc` file, the profile); the parent run carries the resolved params
(flattened) and, once the gate has run, the verdict and headline metrics (`roll_up`), so the
experiment's run list answers "which run, on what data, with what result" without opening
children. A step that logs after its work passes `started` so its duration is the work's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hrm.config import Params, TrackingConfig

PIPELINE_KEY_TAG = "hrm.pipeline_key"
PIPELINE_RUN_ENV = "HRM_PIPELINE_RUN"
UNKNOWN = "unknown"


def git_state(cwd: str | Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of the git tree at `cwd`; (None,
    None) outside git or without git. The one place the project asks git where code came from
    (run tags here, `code_version` in checkpoints)."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def data_version(params: Params) -> str:
    """The md5 DVC records in the `.dvc` file `hrm data materialise` writes for a snapshot under
    the project (`hrm.data.materialise.snapshot_pointer`: `data.dvc`), else `unknown`."""
    import yaml

    from hrm.data.materialise import snapshot_pointer

    if Path(params.data.snapshot).is_absolute():  # outside a project: no pointer to read
        return UNKNOWN
    try:  # steps run at the project root, where the pointer is
        pointer = snapshot_pointer(params.data.snapshot).read_text(encoding="utf-8")
        outs = (yaml.safe_load(pointer) or {}).get("outs") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return UNKNOWN
    if outs and isinstance(outs[0], dict) and outs[0].get("md5"):
        return str(outs[0]["md5"])
    return UNKNOWN


def provenance_tags(params: Params) -> dict[str, str]:
    """Git commit (MLflow's own `mlflow.source.git.commit` too, which its UI shows), whether
    tracked files differ from it, the data version and the profile."""
    commit, dirty = git_state()
    return {
        "mlflow.source.git.commit": commit or UNKNOWN,
        "hrm.git.commit": commit or UNKNOWN,
        "hrm.git.dirty": UNKNOWN if dirty is None else str(dirty).lower(),
        "hrm.data.version": data_version(params),
        "hrm.profile": params.profile,
    }


def flat_params(params: Params) -> dict[str, str]:
    """The resolved params as `section.key` -> value (lists and mappings inside as JSON), at
    most MLflow's 6,000 characters a value."""
    out: dict[str, str] = {}
    for section, values in params.model_dump(mode="json").items():
        if not isinstance(values, dict):
            out[section] = str(values)
            continue
        for key, value in values.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            out[f"{section}.{key}"] = text[:6000]
    return out


def pipeline_key(params: Params) -> str:
    """Key that identifies one pipeline run across processes."""
    if os.environ.get(PIPELINE_RUN_ENV):
        return os.environ[PIPELINE_RUN_ENV]
    digest = hashlib.sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode())
    snapshot = Path(params.data.snapshot)
    if snapshot.exists():
        with snapshot.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""What the MLflow UI shows the experiment as (its value for classic model development)."""


def configure(cfg: TrackingConfig) -> str:
    """Point MLflow at the configured backend; returns the experiment id (created if needed)."""
    import mlflow

    uri = cfg.resolved_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        # A tracking server stores artifacts through its own proxy; a local path is only
        # meaningful for a local backend, and on sqlite it is kept relative to the database so
        # the project can move (hrm.artifact_store).
        location = None
        if not uri.startswith(("http://", "https://")):
            from hrm.artifact_store import project_location

            location = project_location(cfg.artifact_location, uri)
        try:
            experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
        except Exception:  # noqa: BLE001 - another process created it first (a unique-name race)
            experiment = mlflow.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    # Runs opened without an explicit experiment (nested ones too) land here, not in Default.
    mlflow.set_experiment(experiment_id=experiment_id)
    # Without the kind, the MLflow 3 UI opens a fresh experiment as GenAI (runs under
    # "Evaluations"); this is classic model training.
    if (experiment is None
            or experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND):
        mlflow.MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment_id


def find_or_create_parent(cfg: TrackingConfig, key: str, profile: str,
                          params: Params | None = None,
                          provenance: dict[str, str] | None = None) -> str:
    """Return the run id of the parent run tagged with `key`, creating it if absent (with the
    provenance tags, computed here unless given, and the flattened params of `params`)."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    experiment_id = configure(cfg)
    client = MlflowClient()
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}' and tags.`hrm.kind` = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    tags = {PIPELINE_KEY_TAG: key, "hrm.kind": "pipeline", "hrm.profile": profile}
    if params is not None:
        tags.update(provenance if provenance is not None else provenance_tags(params))
    run = client.create_run(experiment_id, run_name=f"pipeline-{key[:8]}", tags=tags)
    if params is not None:
        items = [Param(k, v) for k, v in sorted(flat_params(params).items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            client.log_batch(run.info.run_id, params=items[start:start + 100])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@contextmanager
def step_run(params: Params, step: str, *, started: float | None = None) -> Iterator[object]:
    """Open a nested MLflow run for `step` under the pipeline's parent run.

    Yields the active `mlflow.ActiveRun`; log with the usual `mlflow.log_*` calls inside.
    `started` (a `time.time()`): when the step's work began, for steps that open their run only
    to log at the end (the run's duration is then the work's, not the logging's).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    key = pipeline_key(params)
    provenance = provenance_tags(params)  # git runs once per step, not once per run created
    parent_id = find_or_create_parent(params.tracking, key, params.profile, params, provenance)
    experiment_id = configure(params.tracking)
    fail_abandoned(experiment_id, key, step)
    tags = {PIPELINE_KEY_TAG: key, "hrm.kind": "step", "hrm.step": step, **provenance}
    with mlflow.start_run(run_id=parent_id):
        if started is None:
            with mlflow.start_run(experiment_id=experiment_id, run_name=step, nested=True,
                                  tags=tags) as run:
                yield run
            return
        created = MlflowClient().create_run(
            experiment_id, start_time=int(started * 1000), run_name=step,
            tags={**tags, "mlflow.parentRunId": parent_id})
        with mlflow.start_run(run_id=created.info.run_id, nested=True) as run:
            yield run


def fail_abandoned(experiment_id: str, key: str, step: str) -> list[str]:
    """Mark FAILED the runs of this step and pipeline still RUNNING: a process killed mid-step
    (kill -9, a lost pod) never ends its run, and the step starting again is its retry. Returns
    their run ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    stale = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{PIPELINE_KEY_TAG}` = '{key}' and tags.`hrm.step` = '{step}' "
                       "and attributes.status = 'RUNNING'"))
    for run in stale:
        client.set_tag(run.info.run_id, "hrm.abandoned",
                       "still RUNNING when the step started again: the process was killed")
        client.set_terminated(run.info.run_id, "FAILED")
    return [r.info.run_id for r in stale]


def roll_up(params: Params, *, metrics: dict[str, float], tags: dict[str, str]) -> str:
    """Put a pipeline's outcome on its parent run (the gate's verdict and headline metrics);
    returns the parent's run id."""
    import math

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    parent_id = find_or_create_parent(params.tracking, pipeline_key(params), params.profile, params)
    import time

    now = int(time.time() * 1000)
    client = MlflowClient()
    client.log_batch(parent_id,
                     metrics=[Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())
                              if v is not None and math.isfinite(float(v))],
                     tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())])
    return parent_id
