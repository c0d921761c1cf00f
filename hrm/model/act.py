"""Adaptive computation time (ACT) with a Q-learned halting head, after the HRM reference.

The carry holds, per batch row, the latent states, the number of segments run, whether the row
has halted, the row's current data and the row's minimum halt step. Training (deep supervision):
every optimizer step runs ONE segment on every row; rows keep their latent carry across
optimizer steps until they halt, and the training loop replaces halted rows with new examples
(`fresh` rows restart from the initial latent state). A row halts when it reaches
`halt_max_steps`, or (training only) when q_halt > q_continue once it has run at least its
minimum number of segments; with probability `halt_exploration_prob` that minimum is drawn
uniformly from [2, halt_max_steps] when the row is loaded (exploration).

Q targets: q_halt learns "the current prediction is fully correct"; q_continue learns, in
`bootstrap` mode (paper), sigmoid of the next segment's max(q_halt, q_continue) (its q_halt at
the last step), computed with one extra no-grad segment; in `halt_only` mode (TRM) there is no
continue target and no extra segment.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from hrm.config import ModelConfig
from hrm.model.hrm import HRMCore
from hrm.model.losses import IGNORE_INDEX


@dataclass
class ActCarry:
    """Per-row state kept across optimizer steps (all tensors share the batch dimension)."""

    z_H: torch.Tensor
    z_L: torch.Tensor
    steps: torch.Tensor
    """int32 [B]: segments run so far for the row's current example."""
    halted: torch.Tensor
    """bool [B]: the row finished its example; the loop loads a new one before the next step."""
    fresh: torch.Tensor
    """bool [B]: the row was just loaded; its latent state is reset on the next step."""
    inputs: torch.Tensor
    """int [B, L]: the row's current example."""
    labels: torch.Tensor
    """int64 [B, L]: targets, -100 outside the target span."""
    valid: torch.Tensor
    """bool [B]: the row holds a real example (padding rows contribute to no loss or metric)."""
    min_steps: torch.Tensor
    """int32 [B]: exploration's minimum halt step for the row (0: none)."""
    primed: torch.Tensor | None = None
    """bool [B] (None: all False): z_H/z_L already hold the no-grad prefix of the row's next
    segment (`bootstrap_reuse`); ignored on fresh rows."""

    def to(self, device: torch.device) -> ActCarry:
        return ActCarry(**{f.name: _to(getattr(self, f.name), device) for f in fields(self)})

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).detach().cpu() for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> ActCarry:
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


def _to(value: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if value is None else value.to(device)


def label_span(labels: torch.Tensor, valid: torch.Tensor) -> tuple[int, int]:
    """[lo, hi): the smallest column range holding every label of the valid rows ((0, 1) when
    there is none, so the LM head still takes part in the graph, e.g. under DDP)."""
    cols = ((labels != IGNORE_INDEX) & valid.view(-1, 1)).any(dim=0).nonzero().flatten()
    if cols.numel() == 0:
        return 0, 1
    return int(cols[0]), int(cols[-1]) + 1


@dataclass
class ActStepOutput:
    carry: ActCarry
    """The carry after this segment (detached); `halted` says which rows finished."""
    logits: torch.Tensor
    """[B, L, V]; with `labels_only`, [B, hi-lo, V] over the batch's label columns [lo, hi)
    (`label_span`), with `labels` sliced alike, so losses and accuracies are unchanged."""
    q_halt: torch.Tensor
    q_continue: torch.Tensor
    target_q_continue: torch.Tensor | None
    """Bootstrapped q_continue target in [0, 1] (None in halt_only mode or at eval)."""
    inputs: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    steps: torch.Tensor
    feedback_ratio: torch.Tensor | None


class HRMAct(nn.Module):
    """The full model: an `HRMCore` plus the ACT halting logic; `forward` is one segment."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, backend: str):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.core = HRMCore(cfg, vocab_size, seq_len, backend)

    def initial_carry(self, batch: int, device: torch.device) -> ActCarry:
        """Every row halted and invalid: the loop fills all of them before the first step."""
        z_H, z_L = self.core.initial_state(batch, self.seq_len, device)
        return ActCarry(
            z_H=z_H,
            z_L=z_L,
            steps=torch.zeros(batch, dtype=torch.int32, device=device),
            halted=torch.ones(batch, dtype=torch.bool, device=device),
            fresh=torch.ones(batch, dtype=torch.bool, device=device),
            inputs=torch.zeros(batch, self.seq_len, dtype=torch.int32, device=device),
            labels=torch.full((batch, self.seq_len), -100, dtype=torch.int64, device=device),
            valid=torch.zeros(batch, dtype=torch.bool, device=device),
            min_steps=torch.zeros(batch, dtype=torch.int32, device=device),
        )

    def forward(
        self,
        carry: ActCarry,
        *,
        L_cycles: int | None = None,
        gate_off: bool = False,
        halt_on_q: bool | None = None,
        max_steps: int | None = None,
        labels_only: bool = False,
    ) -> ActStepOutput:
        """Run one segment on every row. `halt_on_q` defaults to `self.training`.

        `labels_only` (the training loop): logits and labels cover only the batch's label columns
        [lo, hi) (`label_span`), which leaves losses and accuracies unchanged and saves the LM
        head, its softmax and their backward over the prompt."""
        halt_max = max_steps or self.cfg.halt_max_steps
        use_q = self.training if halt_on_q is None else halt_on_q
        z_H, z_L = self.core.reset_rows(carry.fresh, carry.z_H, carry.z_L)
        labels, span = carry.labels, None
        if labels_only:
            span = label_span(carry.labels, carry.valid)
            labels = carry.labels[:, span[0] : span[1]]
        bootstrap = self.training and self.cfg.q_target == "bootstrap" and halt_max > 1
        reuse = bootstrap and self.cfg.bootstrap_reuse
        primed = carry.primed & ~carry.fresh if (reuse and carry.primed is not None) else None
        seg = self.core(z_H, z_L, carry.inputs, L_cycles=L_cycles, gate_off=gate_off, head_span=span,
                        primed=primed)
        target_q_continue = None
        next_z = (seg.z_H, seg.z_L)
        with torch.no_grad():
            steps = torch.where(carry.fresh, torch.zeros_like(carry.steps), carry.steps) + 1
            is_last = steps >= halt_max
            halted = is_last.clone()
            if use_q and halt_max > 1:
                halted |= (seg.q_halt > seg.q_continue) & (steps >= carry.min_steps)
            if bootstrap:
                # The row's next segment (no grad), for its Q values only (no LM head).
                nxt = self.core(seg.z_H, seg.z_L, carry.inputs, L_cycles=L_cycles, gate_off=gate_off,
                                lm_head=False, return_prefix=reuse, carry_out=False)
                target_q_continue = torch.sigmoid(
                    torch.where(is_last, nxt.q_halt, torch.maximum(nxt.q_halt, nxt.q_continue))
                )
                if reuse:
                    next_z = nxt.prefix
        new_carry = replace(carry, z_H=next_z[0], z_L=next_z[1], steps=steps, halted=halted,
                            fresh=torch.zeros_like(carry.fresh),
                            primed=torch.full_like(carry.fresh, reuse))
        return ActStepOutput(
            carry=new_carry,
            logits=seg.logits,
            q_halt=seg.q_halt,
            q_continue=seg.q_continue,
            target_q_continue=target_q_continue,
            inputs=carry.inputs,
            labels=labels,
            valid=carry.valid,
            steps=steps,
            feedback_ratio=seg.feedback_ratio,
        )
