"""Losses: LM cross-entropy (softmax or stablemax) in fp32 over label tokens, and the two
binary Q losses; `total = lm + q_weight * (q_halt + q_continue)`.

Normalisation: the LM loss is the sum of token losses divided by `lm_denominator` (by default the
number of label tokens of valid rows, i.e. a mean over label tokens). Under DDP the caller passes
the GLOBAL label count divided by the world size so that DDP's gradient averaging yields the
gradient of the global mean, i.e. the same semantics as one process with the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def stablemax_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log of s(x)/sum s(x) with s(x) = x + 1 for x >= 0 and 1 / (1 - x) otherwise (fp32)."""
    x = logits.float()
    s = torch.where(x >= 0, x + 1, 1.0 / (1.0 - torch.where(x >= 0, torch.zeros_like(x), x)))
    return torch.log(s / s.sum(dim=-1, keepdim=True))


def token_losses(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token loss [B, L] (0 at ignored positions), computed in fp32."""
    flat_logits = logits.float().reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    if kind == "softmax":
        loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="none")
    elif kind == "stablemax":
        logp = stablemax_log_probs(flat_logits)
        safe = flat_labels.clamp_min(0)
        loss = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * (flat_labels != IGNORE_INDEX)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    return loss.view(labels.shape)


@dataclass
class LossParts:
    total: torch.Tensor
    lm: torch.Tensor
    q_halt: torch.Tensor
    q_continue: torch.Tensor
    seq_correct: torch.Tensor
    """bool [B]: every label token predicted correctly (the q_halt target)."""
    token_correct: torch.Tensor
    """bool [B, L]: argmax == label at label positions (False elsewhere)."""
    label_mask: torch.Tensor
    """bool [B, L]: label positions of valid rows."""


def act_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    q_halt: torch.Tensor,
    q_continue: torch.Tensor,
    target_q_continue: torch.Tensor | None,
    *,
    q_weight: float,
    kind: str = "softmax",
    lm_denominator: float | torch.Tensor | None = None,
    row_denominator: float | torch.Tensor | None = None,
) -> LossParts:
    """All training losses of one ACT segment; invalid rows contribute nothing."""
    labels = torch.where(valid.view(-1, 1), labels, torch.full_like(labels, IGNORE_INDEX))
    mask = labels != IGNORE_INDEX
    per_token = token_losses(logits, labels, kind)
    n_tokens = lm_denominator if lm_denominator is not None else mask.sum().clamp_min(1)
    lm = per_token.sum() / n_tokens
    with torch.no_grad():
        token_correct = (logits.argmax(-1) == labels) & mask
        seq_correct = (token_correct.sum(-1) == mask.sum(-1)) & valid
    vf = valid.float()
    n_rows = row_denominator if row_denominator is not None else vf.sum().clamp_min(1)
    q_halt_loss = (F.binary_cross_entropy_with_logits(q_halt, seq_correct.float(), reduction="none") * vf).sum() / n_rows
    if target_q_continue is not None:
        q_cont_loss = (
            F.binary_cross_entropy_with_logits(q_continue, target_q_continue.float(), reduction="none") * vf
        ).sum() / n_rows
    else:
        q_cont_loss = torch.zeros((), device=logits.device)
    total = lm + q_weight * (q_halt_loss + q_cont_loss)
    return LossParts(total, lm, q_halt_loss, q_cont_loss, seq_correct, token_correct, mask)
