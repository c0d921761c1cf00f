"""End to end: `hrm pipeline run-local` (kfp.local) on the tiny profile, on the real sample.

The params' gate criteria are lenient (`loss < 1e9` on val), so the gate decides PROMOTE and the
promote branch runs: the refinement checkpoint is registered in the run's own sqlite MLflow
registry and the `champion` alias moves to it. The FLAG branch is exercised end to end by the
DVC pipeline test (tests/dvc); one kfp.local run of the whole DAG is what this budget allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

LENIENT = [{"metric": "loss", "op": "<", "threshold": 1.0e9, "split": "val"}]


def _one(root: Path, pattern: str) -> Path:
    found = sorted(root.rglob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


@pytest.mark.slow
def test_run_local_promotes_through_the_cli(step_runs, sample_path: Path, tiny_params_file: Path,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from hrm.cli import app
    from hrm.gate.registry import checkpoint_sha256
    from pipelines.local import RESULT_FILE

    raw = yaml.safe_load(tiny_params_file.read_text())
    raw["eval"]["run_tests"] = False
    # The suite's shared caches: the tenacity snapshot (whole functions) and the corpus sdists.
    repo = Path(__file__).resolve().parents[2]
    raw["envs"]["cache_dir"] = str(repo / ".cache" / "hrm-envs")
    raw["corpus"]["cache_dir"] = str(repo / ".cache" / "hrm-corpus")
    raw["sequences"]["held_out_repos"] = []  # the sample is all tenacity: keep train rows
    raw["gate"]["criteria"] = LENIENT
    raw["gate"]["guard_metric"] = None
    raw["gate"]["primary_metric"] = None  # a tiny model does not beat copying: test the promote branch
    tiny_params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # MLflow artifacts (tracking.artifact_location) land here
    out = tmp_path / "run"

    result = CliRunner().invoke(app, [
        "pipeline", "run-local", "--data", str(sample_path), "--out", str(out),
        "--params", str(tiny_params_file), "--profile", "tiny",
    ])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.strip().splitlines()[-1])
    assert printed["branch"] == "promote" and printed["action"] == "promoted"
    recorded = json.loads((out / RESULT_FILE).read_text())
    assert recorded["action"] == "promoted"
    root = Path(printed["pipeline_root"])
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]  # one directory per pipeline run

    # The gate decided PROMOTE, the promote branch ran and the flag branch did not.
    decision = _one(run_dir / "gate", "gate.json").parent
    assert json.loads((decision / "gate.json").read_text())["verdict"] == "PROMOTE"
    # The promote branch leaves what DVC's gate stage leaves (`act_on_decision`): the decision
    # with the registry action recorded, and registry.json.
    record = _one(run_dir / "promote", "registry.json").parent
    assert json.loads((record / "gate.json").read_text())["registry_action"] == "promoted"
    assert json.loads((record / "registry.json").read_text())["action"] == "promoted"
    task_dirs = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert "promote" in task_dirs and "flag" not in task_dirs
    assert "action: **promoted**" in _one(run_dir / "promote", "registration").read_text()

    # Outputs: a checkpoint per phase, evaluation metrics for both splits, the gate's reports
    # and plots, and the HTML report the UI shows with its plots inlined.
    summaries = sorted(root.rglob("summary.json"))
    checkpoints = [p for s in summaries if (p := s.parent / "checkpoints").is_dir()]
    # the model's three phases and, beside them, the reverse-learning control's three
    control = _one(run_dir / "train-control", "control.json").parent
    assert sorted(c.parent.name for c in checkpoints if control in c.parents) == [
        "foundation", "optimisation", "refinement"]
    checkpoints = [c for c in checkpoints if control not in c.parents]
    assert len(checkpoints) == 3 and all(any(c.glob("*.pt")) for c in checkpoints), checkpoints
    metrics_files = sorted(root.rglob("metrics.json"))  # evaluate@val, evaluate@test
    assert len(metrics_files) == 2
    assert all("loss" in json.loads(p.read_text()) for p in metrics_files)
    assert all((p.parent / "report.md").is_file() for p in metrics_files)
    assert (decision / "report.md").is_file()
    assert sorted(p.name for p in (decision / "plots").glob("*.png"))
    html = _one(run_dir / "gate", "report").read_text()
    assert "<html" in html.lower() and "data:image/png;base64," in html

    # The run's own sqlite registry: `champion` points at the refinement checkpoint's version.
    assert recorded["tracking_uri"] == f"sqlite:///{out / 'mlflow.db'}"
    # registry_uri too: without it the client falls back to the process-wide registry URI that
    # earlier tests in the same session set (another database with its own champion).
    client = MlflowClient(tracking_uri=recorded["tracking_uri"], registry_uri=recorded["tracking_uri"])
    champion = client.get_model_version_by_alias(raw["gate"]["model_name"], raw["gate"]["alias"])
    assert champion.tags["gate"] == "promoted"
    final = next(c for c in checkpoints if "train-phase-3" in str(c))
    assert champion.tags["checkpoint_sha256"] == checkpoint_sha256(final)
    versions = client.search_model_versions(f"name='{raw['gate']['model_name']}'")
    assert [v.version for v in versions] == [champion.version]

    # One MLflow run per step under one parent, the same set `dvc repro` leaves
    # (tests/test_dvc_pipeline.py): the data steps track themselves, whoever calls them.
    assert list(step_runs(recorded["tracking_uri"]).values()) == [step_runs.expected]
