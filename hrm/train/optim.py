"""Optimisers, learning-rate schedule and weight EMA for training.

Adam-atan2 (Everett et al. 2024, used by the HRM reference) replaces Adam's m / (sqrt(v) + eps)
by a * atan2(m, b * sqrt(v)): scale-invariant, bounded, and free of the epsilon hyperparameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hrm.config import TrainConfig


class AdamAtan2(torch.optim.Optimizer):
    """Pure-PyTorch Adam-atan2 with decoupled weight decay."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.95), weight_decay: float = 0.0,
                 a: float = 1.27, b: float = 1.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, a=a, b=b))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                grad = p.grad
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = state["exp_avg"] / (1 - beta1**step)
                v_hat = state["exp_avg_sq"] / (1 - beta2**step)
                p.add_(torch.atan2(m_hat, group["b"] * v_hat.sqrt()), alpha=-group["lr"] * group["a"])
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (dim >= 2); not biases, gates or other vectors."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        # fused: one kernel per parameter (on CPU 2.8 ms vs 15 ms for the 5.4M-parameter
        # reference config; the multi-tensor `foreach` path is slower still on CPU).
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), fused=True)
    return AdamAtan2(groups, lr=lr, betas=tuple(cfg.betas))


@dataclass
class LRSchedule:
    """Linear warm-up over `warmup_steps` optimizer steps, then cosine decay to
    `min_ratio * peak` driven by training progress (examples consumed / examples planned).

    Progress rather than a step count drives the decay because with ACT the number of optimizer
    steps per epoch depends on how fast rows halt, which is not known in advance.
    """

    peak: float
    warmup_steps: int
    min_ratio: float

    def lr(self, step: int, progress: float) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        progress = min(max(progress, 0.0), 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.peak * (self.min_ratio + (1 - self.min_ratio) * cosine)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Exponential moving average of the parameters (and a copy of buffers)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.float(), 1 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.cpu() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.shadow[key].copy_(value)
