"""Fixtures of the synth tests: one small real run of the generator per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm.config import load_params

TENACITY = "swesmith/jd__tenacity.0d40e76f"
SCHEMA = "swesmith/keleshev__schema.24a30457"


@pytest.fixture(scope="session")
def synth_params(repo_root: Path):
    """tiny profile, two environments (tenacity: tests in `tests/`; schema: test dir `.`),
    2 instances each."""
    params = load_params(repo_root / "params.yaml", "tiny")
    params.envs.cache_dir = str(repo_root / ".cache" / "hrm-envs")
    params.synth.envs = [TENACITY, SCHEMA]
    params.synth.max_instances = 2
    params.synth.time_budget_s = 150
    params.synth.max_pass_to_pass = 5
    return params


@pytest.fixture(scope="session")
def synth_run(synth_params, tmp_path_factory):
    """(SynthResult, output path) of generating 2 instances from tenacity, then 2 from schema."""
    from hrm.synth import synthesize

    out = tmp_path_factory.mktemp("synth") / "instances.jsonl"
    return synthesize(synth_params, out), out


@pytest.fixture(scope="session")
def schema_env(synth_params):
    from hrm.envs import get_environment

    return get_environment(SCHEMA, synth_params.envs)


@pytest.fixture(scope="session")
def tenacity_synth_env(synth_params):
    from hrm.envs import get_environment

    return get_environment(TENACITY, synth_params.envs)
