"""Fixtures of the model tests: a small config, deterministic random inputs, and a carry holding
edit labels in the layout of hrm.sequences (`model_helpers.edit_carry`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from hrm.config import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_helpers import edit_carry  # noqa: E402

VOCAB = 50
SEQ = 12


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The models here are tiny: one intra-op thread computes them fastest, and keeps their time
    steady on a machine whose cores other jobs share (2 threads wait on each other there)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def small_cfg() -> ModelConfig:
    return ModelConfig(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=3,
                       halt_max_steps=3, attention="sdpa")


@pytest.fixture()
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (4, SEQ), generator=torch.Generator().manual_seed(0))


@pytest.fixture()
def make_carry():
    return edit_carry
