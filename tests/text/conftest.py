"""Fixtures of the TEXT area: splits, tokenizer and sequences built once from the real sample,
with the real tenacity environment as the repository snapshot (the pandas row has none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm.config import SequencesConfig, TokenizerConfig
from hrm.data.instance import read_instances
from hrm.sequences import build_sequences
from hrm.splits import build_splits, load_splits
from hrm.tokenizer import build_tokenizer, load_tokenizer

TENACITY = "swesmith/jd__tenacity.0d40e76f"

# The tiny profile's budget: the sample exercises windowing, statement cuts and drops.
TINY_SEQ = SequencesConfig(seq_len=160, max_statement_tokens=32, min_statement_tokens=8, slots=4,
                           max_insertions=16)
# Room for every region of the sample whole: nothing is cut or dropped.
ROOMY_SEQ = SequencesConfig(seq_len=4096, max_statement_tokens=512, min_statement_tokens=64,
                            slots=4, max_insertions=512)


@pytest.fixture(scope="session")
def budgets() -> dict[str, SequencesConfig]:
    return {"tiny": TINY_SEQ, "roomy": ROOMY_SEQ}


@pytest.fixture(scope="session")
def instances(sample_path):
    return read_instances(sample_path)




@pytest.fixture(scope="session")
def tenacity_pristine(tenacity_env) -> Path:
    """The pristine tenacity tree (the PyPI sdist tenacity==9.0.0): read only."""
    return Path(tenacity_env.pristine)


@pytest.fixture(scope="session")
def built(sample_path, envs_cfg, tenacity_env, tmp_path_factory) -> dict[str, Path]:
    """splits -> tokenizer -> sequences (tiny and roomy budgets) on the real sample."""
    root = tmp_path_factory.mktemp("text")
    build_splits(sample_path, root / "splits", SequencesConfig())
    splits_file = root / "splits" / "splits.json"
    build_tokenizer(sample_path, splits_file, root / "tok", TokenizerConfig(vocab_size=1024))
    for name, cfg in (("tiny", TINY_SEQ), ("roomy", ROOMY_SEQ)):
        build_sequences(sample_path, splits_file, root / "tok", root / f"seq_{name}", cfg,
                        envs=envs_cfg, progress=False)
    return {
        "root": root,
        "splits": splits_file,
        "tok": root / "tok",
        "seq_tiny": root / "seq_tiny",
        "seq_roomy": root / "seq_roomy",
    }


@pytest.fixture(scope="session")
def tok(built):
    return load_tokenizer(built["tok"])


@pytest.fixture(scope="session")
def assignments(built) -> dict[str, str]:
    return load_splits(built["splits"])
