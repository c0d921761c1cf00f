"""A project's MLflow store moves with it: artifact locations are relative to the sqlite database
(`hrm-project:` URIs, hrm/artifact_store.py), so a registered version promoted in one directory
loads from another, in a fresh process and through `mlflow server`, and the database names no
path of the directory it was made in."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hrm.artifact_store import (
    SCHEME,
    SERVER_STORE_ENV,
    project_artifact_repository,
    project_location,
    resolve,
)
from hrm.config import parse_params
from hrm.errors import HrmError
from hrm.gate.decide import decide
from hrm.gate.registry import promote

from .conftest import stop_process, wait_for_http
from .test_registry_server import _free_port


def test_relative_locations_on_sqlite_become_project_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert project_location("mlartifacts", "sqlite:///mlflow.db") == f"{SCHEME}:/mlartifacts"
    # relative to the database's directory, not the working directory
    assert project_location("mlartifacts", "sqlite:///store/mlflow.db") == f"{SCHEME}:/../mlartifacts"
    assert project_location("store/art", f"sqlite:///{tmp_path}/store/mlflow.db") == f"{SCHEME}:/art"
    assert project_location("art", "sqlite+pysqlite:///mlflow.db?timeout=20") == f"{SCHEME}:/art"
    # characters a URI would otherwise eat survive the round trip
    odd = project_location("art #1?", "sqlite:///mlflow.db")
    assert resolve(f"{odd}/r1", f"sqlite:///{tmp_path}/mlflow.db") == (tmp_path / "art #1?" / "r1").as_uri()
    # what the user pinned absolutely, URIs, and other backends stay as MLflow makes them
    assert project_location(str(tmp_path / "art"), "sqlite:///mlflow.db") == (tmp_path / "art").as_uri()
    assert project_location("mlartifacts", "postgresql://db/mlflow") == (tmp_path / "mlartifacts").as_uri()
    assert project_location("s3://bucket/art", "sqlite:///mlflow.db") == "s3://bucket/art"
    assert project_location(f"{SCHEME}:/art", "sqlite:///mlflow.db") == f"{SCHEME}:/art"


def test_resolve_per_backend_and_refusals(tmp_path, monkeypatch):
    import mlflow.tracking._tracking_service.utils as tracking_utils

    assert resolve(f"{SCHEME}:/mlartifacts/r1/artifacts", f"sqlite:///{tmp_path}/p/mlflow.db") == (
        tmp_path / "p" / "mlartifacts" / "r1" / "artifacts").as_uri()
    # through a tracking server: its artifact proxy, whose destination is the location's
    # directory (mlartifacts), never the whole project
    assert resolve(f"{SCHEME}:/mlartifacts/r1", "http://host:5000") == "mlflow-artifacts:/r1"
    with pytest.raises(HrmError, match="not inside one"):
        resolve(f"{SCHEME}:/../mlartifacts/r1", "http://host:5000")
    with pytest.raises(HrmError, match=r"relative to a sqlite tracking database.*postgresql://db/m"):
        resolve(f"{SCHEME}:/mlartifacts/r1", "postgresql://db/m")
    with pytest.raises(HrmError, match="not an hrm-project:/<relative path>"):
        resolve(f"{SCHEME}://host/mlartifacts", "sqlite:///mlflow.db")
    with pytest.raises(HrmError, match="sqlite:///<relative path>"):
        resolve(f"{SCHEME}:/a", "sqlite://host/mlflow.db")
    # no tracking URI anywhere: refused, never MLflow's default mlflow.db of the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(SERVER_STORE_ENV, raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    with pytest.raises(HrmError, match="no tracking URI is set"):
        resolve(f"{SCHEME}:/mlartifacts/r1")
    monkeypatch.setenv(SERVER_STORE_ENV, f"sqlite:///{tmp_path}/s/mlflow.db")  # inside mlflow server
    assert resolve(f"{SCHEME}:/a") == (tmp_path / "s" / "a").as_uri()


def test_mlflow_finds_the_repository_through_the_entry_point():
    from mlflow.server.constants import BACKEND_STORE_URI_ENV_VAR
    from mlflow.store.artifact.artifact_repository_registry import (
        get_registered_artifact_repositories,
    )

    assert get_registered_artifact_repositories().get(SCHEME) is project_artifact_repository
    assert SERVER_STORE_ENV == BACKEND_STORE_URI_ENV_VAR  # the private name resolve() reads


def _strings_naming(db: Path, needle: str) -> list[tuple[str, str, str]]:
    """Every text cell of every table of `db` that contains `needle` (table, column, value)."""
    found = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"pragma table_info('{table}')")]
            for column in columns:
                for (value,) in conn.execute(f'select "{column}" from "{table}"'):
                    if isinstance(value, str) and needle in value:
                        found.append((table, column, value))
    return found


@pytest.mark.slow
def test_a_promoted_version_loads_after_the_project_moves(repo_root, run_dirs, synth, template_db,
                                                          tmp_path, monkeypatch):
    import yaml

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(template_db, project / "mlflow.db")
    monkeypatch.chdir(project)
    # configure sets MLflow's URIs (module globals, exported into os.environ too) and active
    # experiment: set here so that monkeypatch takes them all back after the test
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils
    import mlflow.tracking.fluent as fluent

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///mlflow.db")
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    monkeypatch.setenv("HRM_PIPELINE_RUN", "portable-test")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert raw["tracking"]["artifact_location"] == "mlartifacts"  # the default this test is about
    raw["tracking"]["tracking_uri"] = "sqlite:///mlflow.db"
    raw["gate"]["criteria"] = synth.LENIENT
    params = parse_params(raw, "tiny")
    promoted = promote(params, decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir),
                       run_dirs.checkpoint, run_dirs.tokenizer)
    assert (promoted.action, promoted.version) == ("promoted", "1")
    import mlflow

    experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
    assert experiment.artifact_location == f"{SCHEME}:/mlartifacts"
    assert (project / "mlartifacts").is_dir()
    # No artifact location in the database names the directory (MLflow's own Default
    # experiment, id 0, never used by hrm, keeps MLflow's absolute default).
    named = [hit for hit in _strings_naming(project / "mlflow.db", str(project))
             if hit[1] in ("artifact_location", "artifact_uri", "source", "storage_location")
             and not hit[2].endswith("/mlruns/0")]
    assert named == []

    moved = tmp_path / "elsewhere" / "moved-project"
    moved.parent.mkdir()
    shutil.move(project, moved)
    monkeypatch.chdir(tmp_path)
    # (MLflow exports the URIs this process set into os.environ: a fresh shell has neither)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{moved / 'mlflow.db'}"
    # A fresh process (MLflow finds the repository through the installed entry point only).
    script = ("import mlflow, sys; print(mlflow.artifacts.download_artifacts("
              "artifact_uri='models:/hrm-swe@champion', dst_path=sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "dl")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    local = Path(out.stdout.strip().splitlines()[-1])
    assert (local / "artifacts" / "checkpoint" / "step-00000100.pt").read_bytes() == b"weights-v1" * 1000
    assert (local / "MLmodel").is_file()

    # The MLflow UI's server reads the moved artifacts too (run from another directory, with no
    # tracking URI of its own: it resolves against its backend store), and serves them to HTTP
    # clients through its artifact proxy when its destination is the project's mlartifacts/.
    port = _free_port()
    log_path = tmp_path / "ui.log"
    server_env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
             f"sqlite:///{moved / 'mlflow.db'}", "--serve-artifacts", "--artifacts-destination",
             str(moved / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=server_env, cwd=tmp_path)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{url}/health", proc, 90, log_path.read_text)
            version = mlflow.MlflowClient(f"sqlite:///{moved / 'mlflow.db'}").get_model_version(
                "hrm-swe", "1")
            with urllib.request.urlopen(
                    f"{url}/ajax-api/2.0/mlflow/artifacts/list?run_id={version.run_id}&path=model",
                    timeout=30) as resp:
                listed = {f["path"] for f in json.load(resp)["files"]}
            assert "model/MLmodel" in listed, listed
            with urllib.request.urlopen(
                    f"{url}/get-artifact?path=model/MLmodel&run_uuid={version.run_id}", timeout=30) as resp:
                assert b"python_function" in resp.read()
            client = subprocess.run([sys.executable, "-c", script, str(tmp_path / "dl-http")],
                                    env={**server_env, "MLFLOW_TRACKING_URI": url}, cwd=tmp_path,
                                    capture_output=True, text=True, timeout=120)
            assert client.returncode == 0, client.stderr[-3000:]
            over_http = Path(client.stdout.strip().splitlines()[-1])
            assert (over_http / "artifacts" / "checkpoint" / "step-00000100.pt").read_bytes() == (
                b"weights-v1" * 1000)
        finally:
            stop_process(proc)
