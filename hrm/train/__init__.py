"""Phased training of the HRM: `train_phase` (arrays -> files) and `run_phase` (the file-level
step behind `hrm train`, with MLflow tracking). Checkpoint I/O is in hrm.train.checkpoint."""

from __future__ import annotations

from hrm.train.loop import NonFiniteLoss, PhaseResult, StepInfo, train_phase
from hrm.train.run import run_phase

__all__ = ["NonFiniteLoss", "PhaseResult", "StepInfo", "run_phase", "train_phase"]
