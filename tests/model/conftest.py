"""Fixtures of the model tests: a small config and deterministic random inputs."""

from __future__ import annotations

import pytest
import torch

from hrm.config import ModelConfig

VOCAB = 50
SEQ = 12


@pytest.fixture()
def small_cfg() -> ModelConfig:
    return ModelConfig(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=3,
                       halt_max_steps=3, attention="sdpa")


@pytest.fixture()
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (4, SEQ), generator=torch.Generator().manual_seed(0))
