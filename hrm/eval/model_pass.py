"""One inference pass of the model over a split: argmax predictions, per-row loss, ACT stats,
and the reverse-learning ablation (the same rows with the L->H feedback gate forced to 0).

Definitions:
- `loss`: mean per-token softmax cross-entropy (natural log, computed in fp32) over all label
  tokens of the split, from the logits of the final ACT segment each row ran (micro average).
  Always softmax CE, whatever `model.loss` the model was trained with (a stablemax-trained
  model's training loss is a different quantity): checkpoints stay comparable on one scale.
- `act_mean_steps`: mean number of ACT segments run per row.
- `reverse_learning_integration`: share of rows whose mean per-token loss (the softmax CE above)
  is lower with the
  feedback than with the gate forced to 0; ties count half (0.5 = no effect). Null when the
  model has no feedback path.
- `reverse_integration_gate`: mean sigmoid gate value of the feedback path (row-weighted).
- `reverse_planning_refinement`: mean ||feedback|| / ||z_H|| over the segments run
  (row-weighted across batches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm


@dataclass
class ModelPass:
    """Per-row outputs of the model on a split."""

    pred_ids: np.ndarray
    """int64 [N, L] argmax token per position."""
    row_loss_sum: np.ndarray
    """float64 [N] summed label-token softmax cross-entropy (fp32) per row."""
    row_tokens: np.ndarray
    """int64 [N] label tokens per row."""
    q_halt: np.ndarray
    steps: np.ndarray
    ablation_loss_sum: np.ndarray | None = None
    """[N] summed softmax CE with the feedback gate forced to 0 (None: no feedback path)."""
    gate_means: list[tuple[float, int]] = field(default_factory=list)
    feedback_ratios: list[tuple[float, int]] = field(default_factory=list)


def _row_loss(logits, labels, ignore_index: int):
    """Summed softmax cross-entropy (fp32) over the label tokens of each row ([B])."""
    import torch.nn.functional as F

    per_token = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                ignore_index=ignore_index, reduction="none")
    return per_token.view(labels.shape).sum(dim=1).double().cpu().numpy()


def run_model_pass(model, inputs: np.ndarray, labels: np.ndarray, *, ignore_index: int,
                   batch_size: int, halt_on_q: bool, ablation: bool) -> ModelPass:
    """Greedy outputs for every row; with `ablation`, also the gate-off losses."""
    import torch

    from hrm.model.inference import run_inference

    n = inputs.shape[0]
    preds, loss_sum, q_halt, steps, abl = [], [], [], [], []
    gates: list[tuple[float, int]] = []
    ratios: list[tuple[float, int]] = []
    for start in tqdm(range(0, n, batch_size), desc="inference", unit="batch", leave=False):
        x = torch.as_tensor(inputs[start:start + batch_size])
        y = torch.as_tensor(labels[start:start + batch_size]).long()
        out = run_inference(model, x, halt_on_q=halt_on_q)
        y = y.to(out.logits.device)
        preds.append(out.logits.argmax(dim=-1).cpu().numpy())
        loss_sum.append(_row_loss(out.logits, y, ignore_index))
        q_halt.append(out.q_halt.float().cpu().numpy())
        steps.append(out.steps.cpu().numpy())
        if out.gate_mean is not None:
            gates.append((out.gate_mean, len(x)))
        if out.feedback_ratio is not None:
            ratios.append((out.feedback_ratio, len(x)))
        if ablation:
            off = run_inference(model, x, halt_on_q=halt_on_q, reverse_gate_off=True)
            abl.append(_row_loss(off.logits, y, ignore_index))
    return ModelPass(
        pred_ids=np.concatenate(preds).astype(np.int64),
        row_loss_sum=np.concatenate(loss_sum),
        row_tokens=(labels != ignore_index).sum(axis=1).astype(np.int64),
        q_halt=np.concatenate(q_halt),
        steps=np.concatenate(steps),
        ablation_loss_sum=np.concatenate(abl) if ablation else None,
        gate_means=gates,
        feedback_ratios=ratios,
    )


def _weighted(values: list[tuple[float, int]]) -> float | None:
    total = sum(w for _, w in values)
    return sum(v * w for v, w in values) / total if total else None


def integration_share(with_feedback: np.ndarray, gate_off: np.ndarray) -> float:
    """Share of rows whose loss is lower with feedback than without; ties count half."""
    if with_feedback.shape != gate_off.shape or with_feedback.size == 0:
        raise ValueError("need the same non-empty rows with and without feedback")
    # Equal within float noise counts as a tie, not as a win for either side.
    tie = np.isclose(with_feedback, gate_off, rtol=1e-7, atol=1e-9)
    lower = (with_feedback < gate_off) & ~tie
    return float((lower.sum() + 0.5 * tie.sum()) / with_feedback.size)


def pass_metrics(mp: ModelPass) -> dict[str, float | None]:
    """`loss`, `act_mean_steps` and the reverse-learning metrics of a pass."""
    tokens = mp.row_tokens.clip(min=1)
    out: dict[str, float | None] = {
        "loss": float(mp.row_loss_sum.sum() / mp.row_tokens.sum()),
        "act_mean_steps": float(mp.steps.mean()),
        "reverse_learning_integration": None,
        "reverse_integration_gate": None,
        "reverse_planning_refinement": None,
    }
    if mp.ablation_loss_sum is not None:
        out["reverse_learning_integration"] = integration_share(
            mp.row_loss_sum / tokens, mp.ablation_loss_sum / tokens)
        out["reverse_integration_gate"] = _weighted(mp.gate_means)
        out["reverse_planning_refinement"] = _weighted(mp.feedback_ratios)
    return out
