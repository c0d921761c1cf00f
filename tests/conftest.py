"""Fixtures shared by every test area: the real SWE-smith sample and a tiny-profile params file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PATH = REPO_ROOT.parent / "shared" / "data" / "swe-smith" / "sample.jsonl"

# Telemetry off for everything the suite starts.
for _var, _value in {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_var, _value)


def pytest_collection_modifyitems(config, items):
    """Hub tests run only with HRM_TEST_HUB=1, heavy ones with HRM_TEST_HEAVY=1; CUDA tests
    only where CUDA exists."""
    skip_hub = pytest.mark.skip(reason="hub access is opt-in: set HRM_TEST_HUB=1")
    skip_heavy = pytest.mark.skip(reason="minutes-long run, figure recorded in BENCHMARKS.md: "
                                         "set HRM_TEST_HEAVY=1 to run it")
    for item in items:
        if "hub" in item.keywords and os.environ.get("HRM_TEST_HUB") != "1":
            item.add_marker(skip_hub)
        if "heavy" in item.keywords and os.environ.get("HRM_TEST_HEAVY") != "1":
            item.add_marker(skip_heavy)
        if "cuda" in item.keywords:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def sample_path() -> Path:
    """The 57 real SWE-smith rows, read in place. Absent: skip, or fail under CI=true."""
    if not SAMPLE_PATH.exists():
        message = "real SWE-smith sample not found at ../shared/data/swe-smith/sample.jsonl"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return SAMPLE_PATH


@pytest.fixture()
def tiny_params_file(tmp_path: Path) -> Path:
    """A copy of the repository params.yaml with `profile: tiny`, in a temporary directory."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["profile"] = "tiny"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def copy_repo_files(dest: Path, names: list[str]) -> None:
    """Copy top-level project files (params.yaml, dvc.yaml, ...) into a scratch project."""
    for name in names:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)


TENACITY = "swesmith/jd__tenacity.0d40e76f"

PIPELINE_STEP_RUNS = sorted([
    "validate", "split", "corpus", "tokenizer", "sequences", "train:foundation",
    "train:optimisation", "train:refinement", "train:control:foundation",
    "train:control:optimisation", "train:control:refinement", "evaluate:val", "evaluate:test", "gate"])
"""The MLflow step runs one pipeline run leaves under its parent, whoever runs it (`dvc repro`
or KFP); the registry's own step (`gate-promote` / `gate-flag`) is apart: DVC's gate stage acts
on the registry inside its `gate` run, KFP's promote/flag task opens its own."""


def _step_runs(tracking_uri: str) -> dict[str, list[str]]:
    """Parent run id -> the sorted `hrm.step` names of its step runs (registry steps aside)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    out: dict[str, list[str]] = {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], "tags.`hrm.kind` = 'step'"):
            step = run.data.tags["hrm.step"]
            if not step.startswith("gate-"):
                out.setdefault(run.data.tags["mlflow.parentRunId"], []).append(step)
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture(scope="session")
def step_runs():
    """`step_runs(tracking_uri)`: parent run id -> its sorted step names (`_step_runs`);
    `step_runs.expected`: `PIPELINE_STEP_RUNS`."""
    _step_runs.expected = PIPELINE_STEP_RUNS
    return _step_runs


@pytest.fixture(scope="session")
def envs_cfg(repo_root: Path):
    """The tiny profile's environments, in the repository's `.cache/hrm-envs`: built once per
    machine, shared by every test area (the build is what downloads the sdists)."""
    from hrm.config import load_params

    cfg = load_params(repo_root / "params.yaml", "tiny").envs
    return cfg.model_copy(update={"cache_dir": str(repo_root / ".cache" / "hrm-envs")})


@pytest.fixture(scope="session")
def tenacity_env(envs_cfg):
    from hrm.envs import get_environment

    return get_environment(TENACITY, envs_cfg)
