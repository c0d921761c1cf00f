"""Fixtures for the evaluation tests: real sample hunks, a tiny tokenizer + sequences built from
the real sample in a temporary directory, and the cached tenacity environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm.config import load_params
from hrm.data.instance import read_instances
from hrm.hunks import parse_patch

TENACITY = "swesmith/jd__tenacity.0d40e76f"


@pytest.fixture(scope="session")
def instances(sample_path):
    return read_instances(sample_path)


@pytest.fixture(scope="session")
def sample_hunks(instances):
    """(instance, hunks) for every sample row."""
    return [(inst, parse_patch(inst.patch, source=inst.instance_id)) for inst in instances]


@pytest.fixture(scope="session")
def tiny_params(repo_root):
    return load_params(repo_root / "params.yaml", profile="tiny")


@pytest.fixture(scope="session")
def built(tmp_path_factory, sample_path, tiny_params):
    """Splits, tokenizer and sequences of the real sample (tiny profile)."""
    from hrm.sequences import build_sequences
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("eval-built")
    build_splits(sample_path, root / "splits", tiny_params.sequences)
    build_tokenizer(sample_path, root / "splits" / "splits.json", root / "tok", tiny_params.tokenizer)
    build_sequences(sample_path, root / "splits" / "splits.json", root / "tok", root / "seq",
                    tiny_params.sequences)
    return root


@pytest.fixture(scope="session")
def tenacity_env(repo_root, tiny_params):
    """The cached tenacity environment in the repository's .cache (built by the ENVS code)."""
    from hrm.envs import get_environment

    cfg = tiny_params.envs.model_copy(update={"cache_dir": str(Path(repo_root) / ".cache/hrm-envs")})
    return get_environment(TENACITY, cfg), cfg
