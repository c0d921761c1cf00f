"""The glue the component bodies run: params, metrics logging, input layout, torchrun."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from components.runtime import (
    log_metrics_file,
    publish_text,
    resolve_params,
    stage_layout,
    task_params,
    torchrun_command,
)
from hrm.config import ConfigError
from hrm.errors import InputError


class _Metrics:
    """Records log_metric calls the way kfp.dsl.Metrics would."""

    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.logged[name] = value


def test_task_params_applies_profile_source_and_tracking(repo_root: Path, monkeypatch) -> None:
    # task_params sets both in os.environ: setenv first so monkeypatch restores them after
    for name in ("MLFLOW_TRACKING_URI", "HRM_PIPELINE_RUN"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    params = task_params(json.dumps(raw), "tiny", data_source="/data/x.jsonl",
                         tracking_uri="http://mlflow:5000", pipeline_run="run-7")
    assert params.profile == "tiny"
    assert params.tokenizer.vocab_size == raw["profiles"]["tiny"]["tokenizer"]["vocab_size"]
    assert params.data.source == "/data/x.jsonl"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert os.environ["HRM_PIPELINE_RUN"] == "run-7"


def test_task_params_names_the_parameter_on_bad_input() -> None:
    with pytest.raises(ConfigError, match="pipeline parameter params"):
        task_params("[1, 2]", "tiny")
    with pytest.raises(ConfigError, match="tokenizer.vocab_size"):
        task_params(json.dumps({"tokenizer": {"vocab_size": 3}}), "")


def test_resolve_params_applies_profile_then_overrides(repo_root: Path, monkeypatch) -> None:
    monkeypatch.delenv("HRM_PROFILE", raising=False)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    from hrm.config import resolve_raw

    tiny = resolve_raw(raw, "tiny")["train"]["phases"]  # the base phases, overridden by name
    criteria = [{"metric": "loss", "op": "<", "threshold": 1e9, "split": "val"}]
    resolved = resolve_params(json.dumps(raw), "tiny", epochs_scale=2.5, lr_scale=0.5,
                              criteria_json=json.dumps(criteria))
    assert "profiles" not in resolved and resolved["profile"] == "tiny"
    # Scaled from the *profile's* phases (the tiny profile overrides the base ones by name).
    assert [p["epochs"] for p in resolved["train"]["phases"]] == \
        [max(1, round(p["epochs"] * 2.5)) for p in tiny]
    assert [p["lr"] for p in resolved["train"]["phases"]] == [p["lr"] * 0.5 for p in tiny]
    assert resolved["gate"]["criteria"] == criteria
    # What the tasks then parse is exactly that, with the same profile.
    params = task_params(json.dumps(resolved), "tiny")
    assert [c.threshold for c in params.gate.criteria] == [1e9]
    assert params.tokenizer.vocab_size == raw["profiles"]["tiny"]["tokenizer"]["vocab_size"]
    # Epochs never drop below 1; defaults change nothing.
    small = resolve_params(json.dumps(raw), "tiny", epochs_scale=0.01)
    assert all(p["epochs"] == 1 for p in small["train"]["phases"])
    same = resolve_params(json.dumps(raw), "cpu")
    assert same["train"]["phases"] == raw["train"]["phases"]
    assert same["gate"]["criteria"] == raw["gate"]["criteria"]


def test_resolve_params_errors_name_the_key(repo_root: Path) -> None:
    text = (repo_root / "params.yaml").read_text()
    with pytest.raises(ConfigError, match="epochs_scale"):
        resolve_params(text, "tiny", epochs_scale=0)
    with pytest.raises(ConfigError, match="lr_scale"):
        resolve_params(text, "tiny", lr_scale=float("nan"))
    with pytest.raises(ConfigError, match="criteria_json: must be a JSON list"):
        resolve_params(text, "tiny", criteria_json='{"metric": "loss"}')
    with pytest.raises(ConfigError, match="criteria_json: not valid JSON"):
        resolve_params(text, "tiny", criteria_json="[{")
    with pytest.raises(ConfigError, match=r"gate\.criteria\.0: .*metric: unknown metric 'lose'"):
        resolve_params(text, "tiny", criteria_json='[{"metric": "lose", "op": "<", "threshold": 1}]')
    with pytest.raises(ConfigError, match=r"gate\.criteria\.0\.op"):
        resolve_params(text, "tiny", criteria_json='[{"metric": "loss", "op": "=", "threshold": 1}]')


def test_image_env_cache_overrides_cache_dir(repo_root: Path, monkeypatch) -> None:
    text = (repo_root / "params.yaml").read_text()
    monkeypatch.delenv("HRM_ENVS_CACHE_DIR", raising=False)
    assert task_params(text, "tiny").envs.cache_dir == ".cache/hrm-envs"
    monkeypatch.setenv("HRM_ENVS_CACHE_DIR", "/opt/hrm-envs")
    assert task_params(text, "tiny").envs.cache_dir == "/opt/hrm-envs"


def test_metrics_logged_flat_finite_numbers_only(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"loss": 0.5, "n": 3, "skip": None, "flag": True, "name": "x",
                                "nan": float("nan"), "by": {"val": 0.25}}))
    metrics = _Metrics()
    assert log_metrics_file(metrics, path) == {"loss": 0.5, "n": 3.0, "by.val": 0.25}
    assert metrics.logged == {"loss": 0.5, "n": 3.0, "by.val": 0.25}


def test_metrics_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.json"):
        log_metrics_file(_Metrics(), tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops")
    with pytest.raises(InputError, match=r"bad.json:2"):
        log_metrics_file(_Metrics(), bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[1]")
    with pytest.raises(InputError, match="JSON object"):
        log_metrics_file(_Metrics(), arr)


def test_stage_layout_links_inputs_where_the_step_reads_them(tmp_path: Path) -> None:
    val = tmp_path / "a" / "val"
    val.mkdir(parents=True)
    (val / "metrics.json").write_text("{}")
    root = stage_layout(tmp_path / "root", {"eval/val": str(val)})
    assert (root / "eval" / "val" / "metrics.json").read_text() == "{}"
    with pytest.raises(InputError, match="eval/train"):
        stage_layout(tmp_path / "root2", {"eval/train": str(tmp_path / "nope")})


def test_publish_text_copies_the_report(tmp_path: Path) -> None:
    src = tmp_path / "report.md"
    src.write_text("# Gate\n")

    class _Artifact:
        path = str(tmp_path / "out" / "report")

    publish_text(src, _Artifact())
    assert Path(_Artifact.path).read_text() == "# Gate\n"
    with pytest.raises(InputError, match="absent.md"):
        publish_text(tmp_path / "absent.md", _Artifact())


def test_a_ddp_step_runs_the_cli_with_the_resolved_params(tmp_path, monkeypatch, repo_root) -> None:
    """What a training task runs on several GPUs: the CLI under torchrun, reading the task's
    resolved params from a file beside its output (the command itself needs GPUs: not run)."""
    import subprocess

    import yaml

    from components.runtime import run_cli_under_torchrun
    from hrm.config import load_params

    cfg = load_params(repo_root / "params.yaml", profile="tiny")
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: ran.append((cmd, check)))
    out = tmp_path / "task" / "control"
    out.parent.mkdir()
    run_cli_under_torchrun(cfg, 2, ["train-control", "--out", str(out)], str(out))
    ((cmd, check),) = ran
    params_file = tmp_path / "task" / "params.resolved.yaml"
    assert check and cmd == [*torchrun_command(2, ["train-control", "--out", str(out)]),
                             "--params", str(params_file), "--profile", "tiny"]
    assert load_params(params_file).model_dump() == cfg.model_dump()
    assert yaml.safe_load(params_file.read_text())["profile"] == "tiny"


def test_torchrun_only_for_several_gpus() -> None:
    cmd = torchrun_command(4, ["train", "--phase", "foundation"])
    assert cmd[:3] == ["torchrun", "--standalone", "--nproc_per_node=4"]
    assert cmd[3:6] == ["-m", "hrm", "train"]
    with pytest.raises(ValueError):
        torchrun_command(1, ["train"])
