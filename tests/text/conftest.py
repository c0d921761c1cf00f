"""Fixtures of the TEXT area: splits, tokenizer and sequences built once from the real sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm.config import SequencesConfig, TokenizerConfig
from hrm.data.instance import read_instances
from hrm.sequences import build_sequences
from hrm.splits import build_splits, load_splits
from hrm.tokenizer import build_tokenizer, load_tokenizer

# Budgets small enough that the sample exercises every truncation path.
TINY_SEQ = SequencesConfig(max_prompt_tokens=96, max_target_tokens=48, max_statement_tokens=32,
                           truncation="truncate")
ROOMY_SEQ = SequencesConfig(max_prompt_tokens=1024, max_target_tokens=1024,
                            max_statement_tokens=512, truncation="drop")


@pytest.fixture(scope="session")
def budgets() -> dict[str, SequencesConfig]:
    return {"tiny": TINY_SEQ, "roomy": ROOMY_SEQ}


@pytest.fixture(scope="session")
def instances(sample_path):
    return read_instances(sample_path)


@pytest.fixture(scope="session")
def built(sample_path, tmp_path_factory) -> dict[str, Path]:
    """splits -> tokenizer -> sequences (tiny and roomy budgets) on the real sample."""
    root = tmp_path_factory.mktemp("text")
    build_splits(sample_path, root / "splits", SequencesConfig())
    splits_file = root / "splits" / "splits.json"
    build_tokenizer(sample_path, splits_file, root / "tok", TokenizerConfig(vocab_size=1024))
    for name, cfg in (("tiny", TINY_SEQ), ("roomy", ROOMY_SEQ)):
        build_sequences(sample_path, splits_file, root / "tok", root / f"seq_{name}", cfg,
                        progress=False)
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
