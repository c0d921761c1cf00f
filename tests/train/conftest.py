"""Fixtures of the training tests: tiny-profile params, synthetic arrays, real-sample sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hrm.config import Params, load_params
from hrm.train.data import TrainArrays


def synthetic_arrays(n: int = 16, seq: int = 24, vocab: int = 40, seed: int = 0) -> TrainArrays:
    """A copy task shaped like SequenceSplit: prompt tokens, mask tokens (id 1) at target positions,
    labels = a slice of the prompt there and -100 elsewhere; target lengths vary per row."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(4, vocab, (n, seq)).astype(np.int32)
    labels = np.full((n, seq), -100, np.int64)
    half = seq // 2
    for i in range(n):
        length = 2 + i % (half - 2)
        labels[i, half : half + length] = inputs[i, 1 : 1 + length]
        inputs[i, half:] = 1
    return TrainArrays(inputs, labels, vocab)


@pytest.fixture()
def tiny_params(tiny_params_file: Path) -> Params:
    return load_params(tiny_params_file)


@pytest.fixture()
def arrays() -> TrainArrays:
    return synthetic_arrays(n=32)


@pytest.fixture(scope="session")
def real_sequences(sample_path: Path, tmp_path_factory) -> Path:
    """The real sample, split, tokenised and packed at the tiny profile's sizes (read in place)."""
    import yaml

    from hrm.config import parse_params
    from hrm.sequences import build_sequences
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    root = Path(__file__).resolve().parents[2]
    params = parse_params(yaml.safe_load((root / "params.yaml").read_text()), "tiny")
    out = tmp_path_factory.mktemp("real")
    build_splits(sample_path, out / "splits", params.sequences)
    build_tokenizer(sample_path, out / "splits" / "splits.json", out / "tokenizer", params.tokenizer)
    build_sequences(sample_path, out / "splits" / "splits.json", out / "tokenizer", out / "sequences",
                    params.sequences, progress=False)
    return out
