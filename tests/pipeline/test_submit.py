"""`hrm pipeline submit --wait`: the final state and gate verdict of a cluster run.

No KFP API server runs here, so the client is a stand-in that answers like kfp.Client
(`create_run_from_pipeline_package`, `wait_for_run_completion` returning a V2beta1Run).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import pipelines.submit as submit_mod


def _task(name: str, state: str) -> SimpleNamespace:
    return SimpleNamespace(display_name=name, state=state)


def _run(state: str, tasks: dict[str, str], error: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        run_id="r-1", state=state,
        error=SimpleNamespace(message=error) if error else None,
        run_details=SimpleNamespace(task_details=[_task(n, s) for n, s in tasks.items()]),
    )


def test_summary_names_state_and_verdict() -> None:
    done = submit_mod.summarise_run(
        _run("SUCCEEDED", {"gate": "SUCCEEDED", "promote": "SUCCEEDED", "flag": "SKIPPED"}),
        "http://kfp/#/runs/details/r-1")
    assert done.succeeded and done.branch == "promote"
    text = done.markdown()
    assert "final state: **SUCCEEDED**" in text and "gate verdict: **PROMOTE**" in text
    failed = submit_mod.summarise_run(
        _run("FAILED", {"ingest": "SUCCEEDED", "train_foundation": "FAILED"}, error="OOMKilled"),
        "u")
    assert not failed.succeeded and failed.branch is None
    text = failed.markdown()
    assert "| train_foundation | FAILED |" in text and "OOMKilled" in text and "ingest" not in text


class _Client:
    """Answers like kfp.Client for one run that ends as `final`."""

    def __init__(self, final: SimpleNamespace | None) -> None:
        self.final = final
        self.waited: tuple | None = None

    def create_run_from_pipeline_package(self, package, arguments, **kwargs):
        self.arguments = arguments
        return SimpleNamespace(run_id="r-1")

    def wait_for_run_completion(self, run_id, timeout, sleep_duration=5):
        self.waited = (run_id, timeout)
        if self.final is None:
            raise TimeoutError("Run timeout")
        return self.final


@pytest.mark.parametrize("final, code, state, verdict", [
    (_run("SUCCEEDED", {"promote": "SKIPPED", "flag": "SUCCEEDED"}), 0, "SUCCEEDED", "FLAG"),
    (_run("FAILED", {"gate": "FAILED"}), 1, "FAILED", "none"),
    (None, 1, "TIMEOUT", "none"),
])
def test_cli_wait_writes_the_summary(final, code, state, verdict, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hrm.cli import app

    client = _Client(final)
    monkeypatch.setattr(submit_mod, "_client", lambda *a, **k: client)
    package = tmp_path / "pipeline.yaml"
    package.write_text("{}")
    summary = tmp_path / "summary.md"
    result = CliRunner().invoke(app, [
        "pipeline", "submit", "--host", "http://kfp", "--package", str(package), "--wait",
        "--timeout", "120", "--summary", str(summary), "--epochs-scale", "0.5",
        "--criteria", '[{"metric": "loss", "op": "<", "threshold": 1}]',
    ])
    assert result.exit_code == code, result.output
    assert client.waited == ("r-1", 120)
    assert client.arguments["epochs_scale"] == 0.5 and "lr_scale" not in client.arguments
    assert json.loads(client.arguments["criteria_json"])[0]["metric"] == "loss"
    text = summary.read_text()
    assert f"final state: **{state}**" in text and f"gate verdict: **{verdict}" in text
