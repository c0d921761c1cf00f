"""The registry actions against a real MLflow tracking server (HTTP), not only sqlite directly.

The server is `mlflow server` started here as a subprocess on a free local port, backed by a
sqlite file and serving artifacts itself (the proxy `mlflow-artifacts:` scheme clients use
against a shared server).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hrm.config import parse_params
from hrm.gate.decide import decide
from hrm.gate.registry import champion, flag, promote

from .conftest import stop_process, wait_for_http

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path: Path):
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", proc, 90, (tmp_path / "server.log").read_text)
    yield url
    stop_process(proc)
    log.close()


def test_promote_promote_again_and_flag_through_a_tracking_server(server, repo_root, run_dirs, synth,
                                                                   monkeypatch):
    import mlflow
    import yaml
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HRM_PIPELINE_RUN", "server-test")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["tracking"] = {"tracking_uri": server, "experiment": "gate-server-test"}

    def params_with(criteria):
        doc = {**raw, "gate": {**raw["gate"], "criteria": criteria, "bootstrap_samples": 10}}
        return parse_params(doc, "tiny")

    try:
        lenient = params_with(synth.LENIENT)
        first = promote(lenient, decide(lenient.gate, run_dirs.eval_dir, run_dirs.out_dir),
                        run_dirs.checkpoint, run_dirs.tokenizer)
        assert (first.action, first.version) == ("promoted", "1")
        run_dirs.new_checkpoint(b"weights-v2" * 1000, step=200)
        second = promote(lenient, decide(lenient.gate, run_dirs.eval_dir, run_dirs.out_dir),
                         run_dirs.checkpoint, run_dirs.tokenizer)
        assert (second.action, second.version, second.previous_champion) == ("promoted", "2", "1")

        strict = parse_params(raw, "tiny")  # the plan's criteria: FLAG
        run_dirs.new_checkpoint(b"weights-v3" * 1000, step=300)
        flagged = flag(strict, decide(strict.gate, run_dirs.eval_dir, run_dirs.root / "g3"),
                       run_dirs.checkpoint, run_dirs.tokenizer)
        assert (flagged.action, flagged.version, flagged.champion_version) == ("flagged", "3", "2")

        client = MlflowClient(tracking_uri=server, registry_uri=server)
        assert str(champion(client, "hrm-swe", "champion").version) == "2"
        tags = {v.version: v.tags for v in client.search_model_versions("name='hrm-swe'")}
        assert tags["1"]["champion_status"] == "previous" and tags["2"]["gate"] == "promoted"
        assert tags["3"]["gate"] == "flagged"
        # the registered artifacts went through the server's artifact proxy, and come back
        local = mlflow.artifacts.download_artifacts("models:/hrm-swe@champion", tracking_uri=server)
        assert (Path(local) / "artifacts" / "checkpoint" / "step-00000200.pt").read_bytes() == b"weights-v2" * 1000
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
