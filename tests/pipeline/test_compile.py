"""The compiled IR: loads back, requests GPUs for training, branches on the gate verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.image import BASE_IMAGE, GPU_IMAGE
from pipelines.hrm_pipeline import PHASES, STAGE_OF_TASK, build_pipeline
from pipelines.spec import task_components


def _executor(spec: dict, component_key: str) -> dict:
    label = spec["components"][component_key]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def test_loads_back_with_yaml_and_kfp(compiled_pipeline: Path) -> None:
    from kfp import components

    doc = yaml.safe_load(compiled_pipeline.read_text())
    assert doc["pipelineInfo"]["name"] == "hrm-swe"
    loaded = components.load_component_from_file(str(compiled_pipeline))
    assert loaded.name == "hrm-swe"
    assert set(loaded.component_spec.inputs) == {
        "params", "profile", "data_source", "tracking_uri", "gpus_per_task",
        "epochs_scale", "lr_scale", "criteria_json",
    }


def test_overrides_are_pipeline_parameters_fed_to_every_task(spec: dict) -> None:
    """The UI's knobs default to "no change" and reach the tasks only through `params`."""
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["epochs_scale"]["defaultValue"] == 1.0
    assert params["lr_scale"]["defaultValue"] == 1.0
    assert params["criteria_json"]["defaultValue"] == ""
    tasks = _all_tasks(spec)
    resolve = tasks["params"]["inputs"]["parameters"]
    for name in ("params", "profile", "epochs_scale", "lr_scale", "criteria_json"):
        assert resolve[name]["componentInputParameter"].endswith(name), name
    executables = set(task_components(spec)) - {"params"}
    assert executables == set(STAGE_OF_TASK) - {"params"}
    for name in executables:
        source = tasks[name]["inputs"]["parameters"]["params"]
        # Top-level tasks read the output directly; tasks inside dsl.If/Else via the group.
        producer = source.get("taskOutputParameter", {}).get("producerTask") or \
            source.get("componentInputParameter")
        assert producer in ("resolve-params", "pipelinechannel--resolve-params-Output"), name


def test_params_default_is_the_repository_params(spec: dict, repo_root: Path) -> None:
    params = spec["root"]["inputDefinitions"]["parameters"]
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert json.loads(params["params"]["defaultValue"]) == raw
    assert params["profile"]["defaultValue"] == raw["profile"]


def test_every_training_task_requests_gpus(spec: dict) -> None:
    comps = task_components(spec)
    train_tasks = [name for name in comps if name.startswith("train_")]
    assert sorted(train_tasks) == sorted([f"train_{p}" for p in PHASES] + ["train_control"])
    for name in train_tasks:
        container = _executor(spec, comps[name])
        accel = container["resources"]["accelerator"]
        assert accel["resourceType"] == "nvidia.com/gpu", name
        assert "gpus_per_task" in accel["resourceCount"], name  # the control too: same DDP shares
        assert container["image"] == GPU_IMAGE
        assert float(container["resources"]["cpuRequest"]) >= 4
    others = [name for name in comps if not name.startswith("train_")]
    for name in others:
        container = _executor(spec, comps[name])
        assert "accelerator" not in container.get("resources", {}), name
        assert container["image"] == BASE_IMAGE


def test_no_runtime_pip_install(spec: dict) -> None:
    for label, executor in spec["deploymentSpec"]["executors"].items():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command, label


def _all_tasks(spec: dict) -> dict[str, dict]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return {t.get("taskInfo", {}).get("name", k): t for k, t in tasks.items()}


def test_caching_and_retries(spec: dict) -> None:
    tasks = _all_tasks(spec)
    for name in ("ingest", "validate", "split", "tokenizer", "sequences"):
        assert tasks[name]["cachingOptions"].get("enableCache") is True, name
    for phase in PHASES:
        assert tasks[f"train_{phase}"]["cachingOptions"].get("enableCache", False) is False
    for name in STAGE_OF_TASK:
        assert tasks[name]["retryPolicy"]["maxRetryCount"] >= 1, name


def test_promote_and_flag_are_the_two_gate_branches(spec: dict) -> None:
    tasks = _all_tasks(spec)
    promote_group = tasks["verdict-promote"]
    flag_group = tasks["verdict-flag"]
    cond = promote_group["triggerPolicy"]["condition"]
    assert "gate-Output" in cond and "'promote'" in cond
    assert flag_group["triggerPolicy"]["condition"] == f"!({cond})"
    promote_body = spec["components"][promote_group["componentRef"]["name"]]["dag"]["tasks"]
    flag_body = spec["components"][flag_group["componentRef"]["name"]]["dag"]["tasks"]
    assert [t["taskInfo"]["name"] for t in promote_body.values()] == ["promote"]
    assert [t["taskInfo"]["name"] for t in flag_body.values()] == ["flag"]
    # The pipeline's output is whichever branch ran (dsl.OneOf over the two branch outputs).
    out = spec["root"]["dag"]["outputs"]["parameters"]["Output"]["valueFromParameter"]
    group = spec["root"]["dag"]["tasks"][out["producerSubtask"]]
    group_outputs = spec["components"][group["componentRef"]["name"]]["dag"]["outputs"]
    selectors = group_outputs["parameters"][out["outputParameterKey"]]["valueFromOneof"]
    keys = {s["outputParameterKey"] for s in selectors["parameterSelectors"]}
    assert keys == {"pipelinechannel--promote-Output", "pipelinechannel--flag-Output"}


def test_metrics_and_reports_are_typed(spec: dict) -> None:
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.Markdown"
    # The gate report is the self-contained HTML (plots inlined), so the UI renders the plots.
    gate_out = spec["components"]["comp-gate"]["outputDefinitions"]["artifacts"]
    assert gate_out["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    train_out = spec["components"]["comp-train-phase"]["outputDefinitions"]["artifacts"]
    assert train_out["model"]["artifactType"]["schemaTitle"] == "system.Model"


def test_params_with_other_phases_are_refused(tmp_path: Path, repo_root: Path) -> None:
    from hrm.config import ConfigError

    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["train"]["phases"] = raw["train"]["phases"][:2]
    raw["profiles"] = {"cpu": {}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="train.phases"):
        build_pipeline(path)


def test_cli_compile(tmp_path: Path, repo_root: Path) -> None:
    from typer.testing import CliRunner

    from hrm.cli import app

    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(
        app, ["pipeline", "compile", "--out", str(out), "--params", str(repo_root / "params.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["pipelineInfo"]["name"] == "hrm-swe"


def test_submit_without_package_names_the_file(tmp_path: Path) -> None:
    from hrm.errors import InputError
    from pipelines.submit import submit

    with pytest.raises(InputError, match="missing.yaml"):
        submit(tmp_path / "missing.yaml", "http://127.0.0.1:9", {})
