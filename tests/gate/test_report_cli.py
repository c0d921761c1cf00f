"""`hrm gate` end to end on synthetic inputs: report, plots, MLflow logging, exit codes, KFP parts."""

from __future__ import annotations

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from hrm.cli import app


def _params_file(params, tmp_path):
    path = tmp_path / "params.yaml"
    raw = params.model_dump(mode="json")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _args(run_dirs, params_file, *extra):
    return ["gate", "--eval", str(run_dirs.eval_dir), "--train", str(run_dirs.train_dir),
            "--out", str(run_dirs.out_dir), "--checkpoint", str(run_dirs.checkpoint),
            "--tokenizer", str(run_dirs.tokenizer), "--params", str(params_file), *extra]


def _assert_png_has_content(path):
    import matplotlib.image as mpimg

    assert path.stat().st_size > 15_000, f"{path} is suspiciously small"
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 400
    # a drawn figure has many distinct colours, a blank one a handful
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50


def test_hrm_gate_flags_by_default_reports_and_exits_zero(make_params, run_dirs, tmp_path):
    # plan defaults, target epoch 24 so the tiered rule (after half the plan) applies at epoch 20
    params = make_params(target_epoch=24, bootstrap_samples=10)
    params_file = _params_file(params, tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, _args(run_dirs, params_file))
    assert result.exit_code == 0, result.output
    assert "gate: FLAG (1/6 criteria met)" in result.output
    gate = json.loads((run_dirs.out_dir / "gate.json").read_text())
    assert gate["verdict"] == "FLAG"
    registry = json.loads((run_dirs.out_dir / "registry.json").read_text())
    assert registry["action"] == "flagged" and registry["champion_version"] is None

    report = (run_dirs.out_dir / "report.md").read_text()
    assert "**Verdict: FLAG** — 1/6 criteria met" in report
    assert "| `val/loss` | 0.62 | < 0.3 | 0.32 | ❌" in report
    assert "not projected (no learning curve logged)" in report  # e.g. compilation success
    # the synthetic curves are learnable: projections converge, each with a probability
    assert report.count("| ok |") == 3
    assert "⚠️ triggered | val code_tiered_accuracy 0.31" not in report  # 0.31 >= tiered_min 0.1: clear
    assert "| overfitting | ⚠️ triggered |" in report and "weight_decay" in report
    assert "| search_not_converging | ⚠️ triggered |" in report
    assert "action: **flagged**" in report
    for name in ("learning_curves", "projection_loss", "projection_token_accuracy_all",
                 "projection_code_tiered_accuracy"):
        _assert_png_has_content(run_dirs.out_dir / "plots" / f"{name}.png")
        assert f"plots/{name}.png" in report

    fail = runner.invoke(app, _args(run_dirs, params_file, "--fail-on-flag", "--no-registry"))
    assert fail.exit_code == 1
    # the MLflow gate run carries the report, plots and the verdict
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=params.tracking.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("gate-test").experiment_id],
                              filter_string="tags.`hrm.step` = 'gate'")
    assert runs and runs[0].data.tags["gate.verdict"] == "FLAG"
    logged = {f.path for f in client.list_artifacts(runs[0].info.run_id, "gate")}
    assert {"gate/report.md", "gate/gate.json", "gate/plots"} <= logged


def test_kfp_parts_decide_then_promote(make_params, run_dirs, synth, tmp_path):
    params = make_params(synth.LENIENT, bootstrap_samples=10)
    params_file = _params_file(params, tmp_path)
    runner = CliRunner()
    decided = runner.invoke(app, ["gate", "decide", "--eval", str(run_dirs.eval_dir), "--train",
                                  str(run_dirs.train_dir), "--out", str(run_dirs.out_dir),
                                  "--params", str(params_file)])
    assert decided.exit_code == 0, decided.output
    assert not (run_dirs.out_dir / "registry.json").exists()
    flagged = runner.invoke(app, ["gate", "flag", "--decision", str(run_dirs.out_dir / "gate.json"),
                                  "--checkpoint", str(run_dirs.checkpoint), "--tokenizer",
                                  str(run_dirs.tokenizer), "--params", str(params_file)])
    assert flagged.exit_code != 0 and "refusing to flag" in str(flagged.exception)
    promoted = runner.invoke(app, ["gate", "promote", "--decision", str(run_dirs.out_dir / "gate.json"),
                                   "--checkpoint", str(run_dirs.checkpoint), "--tokenizer",
                                   str(run_dirs.tokenizer), "--params", str(params_file)])
    assert promoted.exit_code == 0, promoted.output
    assert json.loads((run_dirs.out_dir / "registry.json").read_text())["champion_version"] == "1"


def test_too_few_epochs_are_reported_in_the_report(make_params, run_dirs, synth, tmp_path):
    import shutil

    shutil.rmtree(run_dirs.train_dir)
    synth.write_history(run_dirs.train_dir, [("foundation", 2), ("optimisation", 1), ("refinement", 1)])
    params = make_params(synth.LENIENT)
    from hrm.gate.step import run_gate

    outcome = run_gate(params, run_dirs.eval_dir, run_dirs.train_dir, run_dirs.out_dir,
                       use_registry=False, track=False)
    report = (run_dirs.out_dir / "report.md").read_text()
    assert outcome.result.verdict == "PROMOTE"
    assert "**too_few_points**: 4 epoch(s) logged; a fit needs at least 5" in report
    assert "| plateau | not evaluated |" in report
    assert (run_dirs.out_dir / "plots" / "learning_curves.png").is_file()
