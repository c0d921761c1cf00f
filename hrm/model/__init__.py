"""The Hierarchical Reasoning Model (Wang et al. 2025, arXiv 2506.21734) and its ACT wrapper.

Public API: `build_model`, `HRMAct`, `ActCarry`, and `hrm.model.inference.run_inference`.
"""

from __future__ import annotations

import torch

from hrm.config import ModelConfig
from hrm.model.act import ActCarry, ActStepOutput, HRMAct
from hrm.model.attention import resolve_backend

__all__ = ["ActCarry", "ActStepOutput", "HRMAct", "build_model"]


def build_model(model_cfg: ModelConfig, vocab_size: int, seq_len: int, device: torch.device | str,
                slots: int = 4, max_insertions: int = 16) -> HRMAct:
    """Build an HRM on `device`, with the attention kernel resolved for that device; `slots` is
    the number of output tokens a position can hold (`sequences.slots`), `max_insertions` the
    inserting positions a row may hold (`sequences.max_insertions`, the carry's shape).

    `model_cfg.compile` is NOT applied here (the caller wraps with torch.compile where it wants,
    see hrm.train.loop) so that checkpoints always hold the plain module's state dict.
    """
    if vocab_size < 2 or seq_len < 1:
        raise ValueError(f"vocab_size ({vocab_size}) and seq_len ({seq_len}) must be positive")
    device = torch.device(device)
    backend = resolve_backend(model_cfg.attention, device, model_cfg.mask_padding)
    return HRMAct(model_cfg, vocab_size, seq_len, backend, slots, max_insertions).to(device)
