"""MLflow tracking: one parent run per pipeline run, one nested run per step.

Steps run as separate processes (DVC stages, KFP tasks), so the parent run is found by a
tag, `hrm.pipeline_key`, rather than passed in memory. The key is $HRM_PIPELINE_RUN when set
(KFP sets it to its run id), else a fingerprint of the resolved params and the raw snapshot
(`data.snapshot`, the one input every stage descends from), so that every stage of one
`dvc repro` lands under the same parent run.
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
        # meaningful for a local (sqlite) backend.
        location = None
        if not uri.startswith(("http://", "https://")):
            location = cfg.artifact_location
            if "://" not in location:
                location = Path(location).resolve().as_uri()
        experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
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


def find_or_create_parent(cfg: TrackingConfig, key: str, profile: str) -> str:
    """Return the run id of the parent run tagged with `key`, creating it if absent."""
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
    run = client.create_run(
        experiment_id,
        run_name=f"pipeline-{key[:8]}",
        tags={PIPELINE_KEY_TAG: key, "hrm.kind": "pipeline", "hrm.profile": profile},
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@contextmanager
def step_run(params: Params, step: str) -> Iterator[object]:
    """Open a nested MLflow run for `step` under the pipeline's parent run.

    Yields the active `mlflow.ActiveRun`; log with the usual `mlflow.log_*` calls inside.
    """
    import mlflow

    key = pipeline_key(params)
    parent_id = find_or_create_parent(params.tracking, key, params.profile)
    experiment_id = configure(params.tracking)
    with mlflow.start_run(run_id=parent_id):
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=step,
            nested=True,
            tags={PIPELINE_KEY_TAG: key, "hrm.kind": "step", "hrm.step": step},
        ) as run:
            yield run
