"""One inference pass of the model over a split: proposals (greedy fix and ranked alternatives,
`hrm.eval.proposals`), per-row loss, ACT stats, and the reverse-learning ablation (the same rows
with the L->H feedback gate forced to 0).

Definitions:
- `loss`: mean per labelled position of the position's negative log-likelihood under the model
  (natural log, fp32): the first output token's softmax cross-entropy, the insert decision's
  binary cross-entropy, and for an inserting position its inserted tokens' cross-entropy (read
  at the labelled insertions). From the final ACT segment each row ran; micro average over the
  split. Always softmax, whatever `model.loss` trained the model, so checkpoints compare.
- `act_mean_steps`: mean number of ACT segments run per row.
- `reverse_learning_integration` (`paired_control_metrics`): the paired ablation. Share of rows
  whose mean per-position loss under the model is lower than under the control model (trained
  with the feedback path off on the same data, seed and epochs: `hrm.train.control`); ties count
  half (0.5 = no effect). `reverse_learning_p_value`: two-sided exact sign test over the rows
  that are not ties. Null when no control was trained.
- `reverse_gate_off_share`: share of rows whose loss is lower with the feedback than with its
  gate forced to 0 in the same trained model: how much the model leans on the path it was
  trained with (about 1 for any trained component), not whether training with it helped.
- `reverse_integration_gate`: mean sigmoid gate value of the feedback path (row-weighted).
- `reverse_planning_refinement`: mean ||feedback|| / ||z_H|| over the segments run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from hrm.eval.proposals import RowProposal, proposals_from


@dataclass
class ModelPass:
    """Per-row outputs of the model on a split."""

    proposals: list[RowProposal]
    row_loss_sum: np.ndarray
    """float64 [N] summed per-position negative log-likelihood (fp32 softmax) per row."""
    row_positions: np.ndarray
    """int64 [N] labelled positions per row."""
    q_halt: np.ndarray
    steps: np.ndarray
    ablation_loss_sum: np.ndarray | None = None
    """[N] the same loss with the feedback gate forced to 0 (None: no feedback path)."""
    gate_means: list[tuple[float, int]] = field(default_factory=list)
    feedback_ratios: list[tuple[float, int]] = field(default_factory=list)


def row_losses(model, res, x, labels, inserts, ignore_index: int) -> np.ndarray:
    """Summed per-position NLL of each row ([B]) from an inference output."""
    import torch
    import torch.nn.functional as F

    from hrm.model.inference import slot_logits

    lab = torch.as_tensor(labels).long()
    mask = lab != ignore_index
    first = F.cross_entropy(res.logits.float().flatten(0, 1), lab.clamp_min(0).flatten(),
                            reduction="none").view(lab.shape) * mask
    ins_pos = torch.as_tensor(inserts[:, :, 0]).long()
    target = torch.zeros_like(lab, dtype=torch.float32)
    rows, cols = (ins_pos >= 0).nonzero(as_tuple=True)
    target[rows, ins_pos[rows, cols]] = 1.0
    ins = F.binary_cross_entropy_with_logits(res.insert_logits.float(), target, reduction="none") * mask
    total = (first + ins).sum(dim=1).double()
    if rows.numel():
        slots = slot_logits(model, res.z_H, rows, ins_pos[rows, cols])
        slot_lab = torch.as_tensor(inserts[:, :, 1:]).long()[rows, cols]
        ce = F.cross_entropy(slots.flatten(0, 1), slot_lab.flatten(), ignore_index=ignore_index,
                             reduction="none").view(slot_lab.shape).sum(-1).double()
        total.index_add_(0, rows, ce)
    return total.numpy()


def run_model_pass(model, split, *, end_id: int, delete_id: int, batch_size: int, halt_on_q: bool,
                   ablation: bool, positions: int, alternatives: int,
                   rewrites: list | None = None) -> ModelPass:
    """Proposals and losses for every row of a loaded split (`hrm.sequences.SequenceSplit`);
    with `ablation`, also the gate-off losses; `rewrites[i]`: row i's rewrites to score
    (`hrm.eval.rewrite_outputs`), None for none."""
    import torch

    from hrm.model.inference import run_inference

    ignore = split.meta.ignore_index
    n = len(split)
    props: list[RowProposal] = []
    loss_sum, q_halt, steps, abl = [], [], [], []
    gates: list[tuple[float, int]] = []
    ratios: list[tuple[float, int]] = []
    anchors = [[seg[0] for seg in r.segments] for r in split.records]
    for start in tqdm(range(0, n, batch_size), desc="inference", unit="batch", leave=False):
        stop = min(start + batch_size, n)
        x = torch.as_tensor(split.inputs[start:stop])
        labels, inserts = split.labels[start:stop], split.inserts[start:stop]
        res = run_inference(model, x, halt_on_q=halt_on_q)
        loss_sum.append(row_losses(model, res, x, labels, inserts, ignore))
        props += proposals_from(model, res, x, labels, anchors[start:stop], end_id=end_id,
                                delete_id=delete_id, ignore_index=ignore, positions=positions,
                                alternatives=alternatives,
                                rewrites=None if rewrites is None else rewrites[start:stop])
        q_halt.append(res.q_halt.float().cpu().numpy())
        steps.append(res.steps.cpu().numpy())
        if res.gate_mean is not None:
            gates.append((res.gate_mean, len(x)))
        if res.feedback_ratio is not None:
            ratios.append((res.feedback_ratio, len(x)))
        del res
        if ablation:
            off = run_inference(model, x, halt_on_q=halt_on_q, reverse_gate_off=True)
            abl.append(row_losses(model, off, x, labels, inserts, ignore))
    return ModelPass(
        proposals=props,
        row_loss_sum=np.concatenate(loss_sum) if loss_sum else np.zeros(0),
        row_positions=(split.labels != ignore).sum(axis=1).astype(np.int64),
        q_halt=np.concatenate(q_halt) if q_halt else np.zeros(0),
        steps=np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64),
        ablation_loss_sum=np.concatenate(abl) if ablation and abl else None,
        gate_means=gates,
        feedback_ratios=ratios,
    )


def _weighted(values: list[tuple[float, int]]) -> float | None:
    total = sum(w for _, w in values)
    return sum(v * w for v, w in values) / total if total else None


def _compare(with_feedback: np.ndarray, without: np.ndarray) -> tuple[int, int, int]:
    """(rows lower with feedback, rows higher, ties) of two per-row loss arrays."""
    if with_feedback.shape != without.shape or with_feedback.size == 0:
        raise ValueError("need the same non-empty rows with and without feedback")
    # Equal within float noise counts as a tie, not as a win for either side.
    tie = np.isclose(with_feedback, without, rtol=1e-7, atol=1e-9)
    lower = int(((with_feedback < without) & ~tie).sum())
    return lower, int(tie.size - tie.sum()) - lower, int(tie.sum())


def integration_share(with_feedback: np.ndarray, without: np.ndarray) -> float:
    """Share of rows whose loss is lower with feedback than without; ties count half."""
    lower, _, ties = _compare(with_feedback, without)
    return (lower + 0.5 * ties) / with_feedback.size


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance under "no effect" (each untied row a fair coin) of
    a split at least as uneven as wins : losses. 1.0 when there is nothing to test."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def run_loss_pass(model, split, *, batch_size: int, halt_on_q: bool) -> np.ndarray:
    """[N] summed per-position loss of each row of a loaded split under `model` (as
    `run_model_pass` computes it, without the proposals)."""
    import torch

    from hrm.model.inference import run_inference

    out = []
    for start in range(0, len(split), batch_size):
        stop = min(start + batch_size, len(split))
        x = torch.as_tensor(split.inputs[start:stop])
        res = run_inference(model, x, halt_on_q=halt_on_q)
        out.append(row_losses(model, res, x, split.labels[start:stop], split.inserts[start:stop],
                              split.meta.ignore_index))
    return np.concatenate(out) if out else np.zeros(0)


PAIRED_METRICS = ("reverse_learning_integration", "reverse_learning_p_value", "reverse_learning_rows_lower",
                  "reverse_learning_rows_higher", "reverse_learning_control_loss")
"""What `paired_control_metrics` gives (null without a control model)."""


def paired_control_metrics(mp: ModelPass, control_loss_sum: np.ndarray) -> dict[str, float]:
    """The paired reverse-learning ablation: the model's per-row losses against the control's."""
    positions = mp.row_positions.clip(min=1)
    model_loss, control_loss = mp.row_loss_sum / positions, control_loss_sum / positions
    lower, higher, _ = _compare(model_loss, control_loss)
    return {
        "reverse_learning_integration": integration_share(model_loss, control_loss),
        "reverse_learning_p_value": sign_test_p(lower, higher),
        "reverse_learning_rows_lower": float(lower),
        "reverse_learning_rows_higher": float(higher),
        "reverse_learning_control_loss": float(control_loss_sum.sum() / max(mp.row_positions.sum(), 1)),
    }


def pass_metrics(mp: ModelPass) -> dict[str, float | None]:
    """`loss`, `act_mean_steps` and the reverse-learning metrics of a pass."""
    positions = mp.row_positions.clip(min=1)
    out: dict[str, float | None] = {
        "loss": float(mp.row_loss_sum.sum() / max(mp.row_positions.sum(), 1)),
        "act_mean_steps": float(mp.steps.mean()) if mp.steps.size else None,
        **dict.fromkeys(PAIRED_METRICS),
        "reverse_gate_off_share": None,
        "reverse_integration_gate": None,
        "reverse_planning_refinement": None,
    }
    if mp.ablation_loss_sum is not None:
        out["reverse_gate_off_share"] = integration_share(
            mp.row_loss_sum / positions, mp.ablation_loss_sum / positions)
        out["reverse_integration_gate"] = _weighted(mp.gate_means)
        out["reverse_planning_refinement"] = _weighted(mp.feedback_ratios)
    return out
