"""`hrm train` with MLflow tracking (a real sqlite backend in a temporary directory, no mocks): one
nested run per phase under the pipeline's parent run, per-epoch metrics at step = global epoch,
params, and artifacts (config, history, summary, final checkpoint, tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


@pytest.mark.slow
def test_hrm_train_logs_a_nested_run_per_phase(real_sequences, repo_root, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from hrm.cli import app
    from hrm.sequences import load_meta
    from hrm.tokenizer import tokenizer_fingerprint

    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "tiny"
    raw["data"]["snapshot"] = str(tmp_path / "no-snapshot.jsonl")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw["tracking"] = {"tracking_uri": uri, "artifact_location": str(tmp_path / "mlartifacts"),
                       "experiment": "hrm-train-test"}
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("HRM_PIPELINE_RUN", raising=False)
    monkeypatch.chdir(tmp_path)
    tok = real_sequences / "tokenizer"
    common = ["--sequences", str(real_sequences / "sequences"), "--tokenizer", str(tok),
              "--params", str(params_path)]
    runner = CliRunner()
    for phase, extra in (("foundation", []),
                         ("optimisation", ["--resume-from", str(tmp_path / "foundation" / "checkpoints")])):
        result = runner.invoke(app, ["train", "--phase", phase, "--out", str(tmp_path / phase), *common, *extra])
        assert result.exit_code == 0, (result.output, result.exception)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("hrm-train-test")
    parents = set()
    counts = load_meta(real_sequences / "sequences").counts
    # The tiny foundation phase trains one epoch on the corpus split, optimisation one on train.
    for phase, epochs, split in (("foundation", [1], "corpus"), ("optimisation", [2], "train")):
        runs = client.search_runs([exp.experiment_id], f"tags.`hrm.step` = 'train:{phase}'")
        assert len(runs) == 1, phase
        run = runs[0]
        assert run.info.status == "FINISHED"
        parents.add(run.data.tags["mlflow.parentRunId"])
        assert run.data.tags["hrm.phase"] == phase
        assert run.data.tags["hrm.tokenizer_fingerprint"] == tokenizer_fingerprint(tok)
        assert run.data.params["model.hidden_size"] == "32" and run.data.params["phase.name"] == phase
        assert run.data.params["phase.data"] == split
        assert run.data.params["data.train_examples"] == str(counts[split])
        assert run.data.params["data.val_examples"] == str(counts["val"])
        # Per-epoch metrics with the global epoch as step, equal to the phase's history.json.
        history = json.loads((tmp_path / phase / "history.json").read_text())
        for metric in ("loss", "lm_loss", "token_accuracy", "edit_accuracy", "tokens_per_s", "val_lm_loss",
                       "val_edit_accuracy"):
            logged = client.get_metric_history(run.info.run_id, metric)
            assert [m.step for m in logged] == epochs, metric
            assert [m.value for m in logged] == pytest.approx([r[metric] for r in history]), metric
        assert {"train_eval_token_accuracy", "train_eval_edit_accuracy"} <= set(run.data.metrics)
        # Artifacts: config, history, summary, the final checkpoint + manifest, the tokenizer.
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "history.csv", "history.json", "summary.json", "checkpoint", "tokenizer"} <= top
        ckpt = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoint")}
        final = Path(json.loads((tmp_path / phase / "summary.json").read_text())["checkpoint"])
        assert ckpt == {final.name, final.with_suffix(".json").name}
        logged_tok = Path(client.download_artifacts(run.info.run_id, "tokenizer", str(tmp_path / f"dl-{phase}")))
        assert sorted(p.name for p in logged_tok.iterdir()) == ["meta.json", "tokenizer.json"]
        for name in ("meta.json", "tokenizer.json"):
            assert (logged_tok / name).read_bytes() == (tok / name).read_bytes()
    (parent_id,) = parents  # both phases under one pipeline parent run
    assert client.get_run(parent_id).data.tags["hrm.kind"] == "pipeline"
