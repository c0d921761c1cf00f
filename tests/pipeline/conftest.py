"""Fixtures for the Kubeflow / container / CI tests: one compiled pipeline per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def compiled_pipeline(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """The pipeline compiled from the repository's params.yaml, as IR YAML."""
    from pipelines.hrm_pipeline import compile_pipeline

    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    return compile_pipeline(out, repo_root / "params.yaml")


@pytest.fixture(scope="session")
def spec(compiled_pipeline: Path) -> dict:
    from pipelines.spec import load_spec

    return load_spec(compiled_pipeline)
