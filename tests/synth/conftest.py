"""Fixtures of the synth tests: one small real run of the generator per session."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from hrm.config import load_params


@pytest.fixture(scope="session")
def synth_params(repo_root: Path):
    params = load_params(repo_root / "params.yaml", "tiny")
    params.envs.cache_dir = str(repo_root / ".cache" / "hrm-envs")
    params.synth.max_instances = 2
    params.synth.time_budget_s = 150
    params.synth.max_pass_to_pass = 5
    return params


@pytest.fixture(scope="session")
def synth_run(synth_params):
    """(SynthResult, output path) of generating 2 instances from tenacity."""
    from hrm.synth import synthesize

    out = Path(tempfile.mkdtemp(prefix="hrm-synth-test-")) / "instances.jsonl"
    return synthesize(synth_params, out), out
