"""MLflow tracking (a real sqlite store): provenance tags, the parent's params, step durations
for steps that log at the end, and the data version read from the snapshot's .dvc file."""

from __future__ import annotations

import time

from hrm.config import load_params


def _params(repo_root, tmp_path):
    params = load_params(repo_root / "params.yaml", "tiny")
    tracking = params.tracking.model_copy(update={
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "artifact_location": str(tmp_path / "art"), "experiment": "tracking-test"})
    data = params.data.model_copy(update={"snapshot": str(tmp_path / "data" / "instances.jsonl")})
    return params.model_copy(update={"tracking": tracking, "data": data})


def test_step_runs_carry_provenance_and_the_work_duration(repo_root, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from hrm.tracking import data_version, step_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HRM_PIPELINE_RUN", f"tracking-{tmp_path.name}")
    params = _params(repo_root, tmp_path)
    assert data_version(params) == "unknown"  # an absolute snapshot: outside a project
    monkeypatch.chdir(tmp_path)  # steps run at the project root
    params = params.model_copy(update={"data": params.data.model_copy(
        update={"snapshot": "data/instances.jsonl"})})
    assert data_version(params) == "unknown"  # no data.dvc yet
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123abcd.dir\n  path: data\n")
    assert data_version(params) == "0123abcd.dir"

    with step_run(params, "slow-step", started=time.time() - 3.0) as run:
        mlflow.log_metric("x", 1.0)
    with step_run(params, "quick-step"):
        pass
    client = MlflowClient(tracking_uri=params.tracking.tracking_uri)
    logged = client.get_run(run.info.run_id)
    assert logged.info.end_time - logged.info.start_time >= 3000  # the work, not the logging
    assert logged.data.tags["hrm.data.version"] == "0123abcd.dir"
    assert logged.data.tags["hrm.step"] == "slow-step" and logged.info.status == "FINISHED"
    parent = client.get_run(logged.data.tags["mlflow.parentRunId"])
    assert parent.data.params["sequences.seq_len"] == "160"  # the tiny profile, resolved
    assert parent.data.params["profile"] == "tiny"
    quick = client.search_runs([parent.info.experiment_id], "tags.`hrm.step` = 'quick-step'")[0]
    assert quick.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_a_killed_step_run_is_marked_failed_when_the_step_starts_again(repo_root, tmp_path,
                                                                       monkeypatch):
    from mlflow import MlflowClient

    from hrm.tracking import PIPELINE_KEY_TAG, configure, pipeline_key, step_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HRM_PIPELINE_RUN", f"killed-{tmp_path.name}")
    params = _params(repo_root, tmp_path)
    experiment_id = configure(params.tracking)
    client = MlflowClient()
    # what kill -9 inside `hrm train` leaves: a step run that never ended
    killed = client.create_run(experiment_id, run_name="train:foundation", tags={
        PIPELINE_KEY_TAG: pipeline_key(params), "hrm.kind": "step", "hrm.step": "train:foundation"})
    other = client.create_run(experiment_id, run_name="train:optimisation", tags={
        PIPELINE_KEY_TAG: pipeline_key(params), "hrm.kind": "step", "hrm.step": "train:optimisation"})
    with step_run(params, "train:foundation") as run:
        assert run.info.run_id != killed.info.run_id
    old = client.get_run(killed.info.run_id)
    assert old.info.status == "FAILED" and "killed" in old.data.tags["hrm.abandoned"]
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # another step: untouched
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_repair_finds_the_project_registry_from_any_directory(repo_root, tmp_path, monkeypatch):
    """`hrm repair --params PROJECT/params.yaml` run elsewhere: the relative sqlite URI is the
    project's database, and a missing one is an error (never a new empty database)."""
    import pytest

    from hrm.cli.predict import _project_registry
    from hrm.errors import InputError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    params = load_params(repo_root / "params.yaml", "tiny")
    assert params.tracking.tracking_uri == "sqlite:///mlflow.db"
    with pytest.raises(InputError, match="no MLflow registry here"):
        _project_registry(params, project / "params.yaml")
    (project / "mlflow.db").write_bytes(b"")
    found = _project_registry(params, project / "params.yaml")
    assert found.tracking.tracking_uri == f"sqlite:///{project / 'mlflow.db'}"
    assert list(elsewhere.iterdir()) == []


def test_a_missing_alias_names_the_registered_versions(repo_root, tmp_path, monkeypatch):
    """After a FLAG the version is registered but the alias never moved: loading `@champion`
    says which versions exist, with their verdicts, and what to pass instead."""
    import pytest
    from mlflow import MlflowClient

    from hrm.errors import InputError
    from hrm.repairer import load_registered

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = _params(repo_root, tmp_path)
    with pytest.raises(InputError, match="no version of 'hrm-swe' is registered"):
        load_registered("models:/hrm-swe@champion", params, tmp_path / "dst")
    client = MlflowClient(tracking_uri=params.tracking.tracking_uri)
    client.create_registered_model("hrm-swe")
    (tmp_path / "model").mkdir()
    flagged = client.create_model_version("hrm-swe", source=str(tmp_path / "model"))
    client.set_model_version_tag("hrm-swe", flagged.version, "gate", "flagged")
    client.create_model_version("hrm-swe", source=str(tmp_path / "model"))  # no gate run on it
    with pytest.raises(InputError) as err:
        load_registered("models:/hrm-swe@champion", params, tmp_path / "dst")
    message = str(err.value)
    assert "1 (flagged), 2 (no gate verdict)" in message and "--model models:/hrm-swe/2" in message, message
