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


EVAL_TARGET_TOKENS = 128
"""Target budget of the eval fixtures: at the tiny profile's 48 every real target is truncated
(no file context, no tests); at 128 most val rows fit whole."""


def build_real(sample_path, root: Path, params) -> Path:
    """Splits, tokenizer and sequences of the real sample under `root` (read in place)."""
    from hrm.sequences import build_sequences
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    build_splits(sample_path, root / "splits", params.sequences)
    build_tokenizer(sample_path, root / "splits" / "splits.json", root / "tok", params.tokenizer)
    build_sequences(sample_path, root / "splits" / "splits.json", root / "tok", root / "seq",
                    params.sequences, progress=False)
    return root


@pytest.fixture(scope="session")
def eval_params(tiny_params):
    """The tiny profile with room for whole targets (EVAL_TARGET_TOKENS)."""
    seq = tiny_params.sequences.model_copy(update={"max_target_tokens": EVAL_TARGET_TOKENS})
    return tiny_params.model_copy(update={"sequences": seq})


@pytest.fixture(scope="session")
def built(tmp_path_factory, sample_path, eval_params):
    """Splits, tokenizer and sequences of the real sample (tiny profile, 128 target tokens)."""
    return build_real(sample_path, tmp_path_factory.mktemp("eval-built"), eval_params)


@pytest.fixture(scope="session")
def tenacity_env(repo_root, tiny_params):
    """The cached tenacity environment in the repository's .cache (built by the ENVS code)."""
    from hrm.envs import get_environment

    cfg = tiny_params.envs.model_copy(update={"cache_dir": str(Path(repo_root) / ".cache/hrm-envs")})
    return get_environment(TENACITY, cfg), cfg


@pytest.fixture(scope="session")
def tenacity_scorer(tenacity_env, instances):
    """One row scorer with the tenacity execution tier (2 PASS_TO_PASS per row) for the whole
    session: its per-(instance, prediction) run cache spares repeated sandbox runs."""
    from hrm.eval.execution import ExecutionTier
    from hrm.eval.rows import RowScorer

    _env, cfg = tenacity_env
    tier = ExecutionTier(cfg, {i.instance_id: i for i in instances}, 2)
    return RowScorer([0.1, 0.2, 0.3, 0.4], tier, run_tests=True)


@pytest.fixture(scope="session")
def tenacity_rows(tenacity_scorer, sample_hunks):
    """The first tenacity rows (as scorer records) whose bug patch applies to the sdist."""
    from types import SimpleNamespace

    rows = []
    for inst, hunks in sample_hunks:
        if inst.repo != TENACITY:
            continue
        rec = SimpleNamespace(instance_id=inst.instance_id, repo=inst.repo, hunks=hunks,
                              target_truncated=False)
        if not isinstance(tenacity_scorer.context(rec), str):
            rows.append((inst, rec))
        if len(rows) == 2:
            break
    assert len(rows) == 2, "fewer than 2 tenacity rows have an environment"
    return rows
