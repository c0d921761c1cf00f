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
from hrm.model.hrm import PAD_ID, HRMCore
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
    """int64 [B, L]: each code position's first output token (its own when kept), -100
    outside the code."""
    inserts: torch.Tensor
    """int64 [B, E, K]: per position that inserts tokens, its index (-1: none), then the K - 1
    inserted-token labels."""
    valid: torch.Tensor
    """bool [B]: the row holds a real example (padding rows contribute to no loss or metric)."""
    min_steps: torch.Tensor
    """int32 [B]: exploration's minimum halt step for the row (0: none)."""
    primed: torch.Tensor | None = None
    """bool [B] (None: all False): z_H/z_L already hold the no-grad prefix of the row's next
    segment (`bootstrap_reuse`); ignored on fresh rows."""
    negatives: torch.Tensor | None = None
    """int64 [B, R, P, 2] (None: no listwise loss): per row R wrong rewrites, each as up to P
    (position, new first token) pairs, -1 where unused (`hrm.train.negatives`)."""

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


WIDTH_MULTIPLE = 16
"""Trimmed widths are rounded up to a multiple of this: fewer distinct shapes (torch.compile
recompiles per shape) for a few padding columns more."""


def active_width(inputs: torch.Tensor, valid: torch.Tensor) -> int:
    """Columns that hold a token of some valid row, rounded up to `WIDTH_MULTIPLE` (at most
    the carry's width): everything after them is padding in every row that counts."""
    filled = ((inputs != PAD_ID) & valid.view(-1, 1)).any(dim=0).nonzero()
    used = int(filled[-1]) + 1 if filled.numel() else 1
    return min(inputs.shape[1], -(-used // WIDTH_MULTIPLE) * WIDTH_MULTIPLE)


def pick_positions(carry: ActCarry, insert_positions: torch.Tensor, count: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row `count` labelled positions (-1 where the row has fewer): every edited one
    (inserting positions first, then those whose first token changes) and a uniform sample of
    the kept ones (torch's RNG, which checkpoints save). Returns (positions [B, count],
    keep_scale [B, 1]: kept positions per kept position sampled)."""
    labelled = (carry.labels != IGNORE_INDEX) & carry.valid.view(-1, 1)
    changed = labelled & (carry.labels != carry.inputs.long())
    inserting = torch.zeros_like(labelled)
    rows, cols = (insert_positions >= 0).nonzero(as_tuple=True)
    inserting[rows, insert_positions[rows, cols]] = True
    keep = labelled & ~changed & ~inserting
    score = torch.rand(labelled.shape, device=labelled.device)
    score = torch.where(keep, score, torch.full_like(score, -1.0))
    score = torch.where(changed, torch.full_like(score, 2.0), score)
    score = torch.where(inserting, torch.full_like(score, 3.0), score)
    top, idx = score.topk(min(count, score.shape[1]), dim=1)
    picked = torch.where(top >= 0, idx, torch.full_like(idx, -1))
    sampled = ((top >= 0) & (top < 1.5)).sum(1, keepdim=True).clamp_min(1)
    keep_scale = keep.sum(1, keepdim=True).float() / sampled.float()
    return picked, keep_scale


def negative_columns(negatives: torch.Tensor, valid: torch.Tensor, picked: torch.Tensor | None,
                     labels: torch.Tensor | None, span_start: int = 0):
    """Where the head columns of the carry's negatives are: with `picked` (the sampled head
    positions), their positions appended as extra, unlabelled columns (returns the extended
    `picked` and `labels`); without, the columns of the label span starting at `span_start`.
    Returns (picked, labels, rank_cols [B, R, P], rank_tokens [B, R, P]), -1 where unused."""
    pos = torch.where(valid.view(-1, 1, 1), negatives[..., 0], torch.full_like(negatives[..., 0], -1))
    tokens = torch.where(pos >= 0, negatives[..., 1], torch.full_like(pos, -1))
    if picked is None:
        return None, None, torch.where(pos >= 0, pos - span_start, torch.full_like(pos, -1)), tokens
    extra = pos.flatten(1)
    cols = picked.shape[1] + torch.arange(extra.shape[1], device=extra.device).view(pos.shape[1:])
    return (torch.cat([picked, extra], 1), torch.cat([labels, torch.full_like(extra, IGNORE_INDEX)], 1),
            torch.where(pos >= 0, cols.expand_as(pos), torch.full_like(pos, -1)), tokens)


@dataclass
class ActStepOutput:
    carry: ActCarry
    """The carry after this segment (detached); `halted` says which rows finished."""
    logits: torch.Tensor
    """First-token logits [B, L, V]; with `labels_only`, [B, hi-lo, V] over the batch's label
    columns [lo, hi) (`label_span`), with `labels` sliced alike, so losses and accuracies are
    unchanged."""
    own_tokens: torch.Tensor
    """[B, L] (or [B, hi-lo]): the token each column's position holds."""
    keep_scale: torch.Tensor | None
    """Training with `model.head_positions`: [B, 1], kept positions of the row per kept
    position sampled (their loss weight, so the loss estimates the all-positions loss); None
    when every labelled position is a column."""
    insert_logits: torch.Tensor
    """[B, L] (or [B, hi-lo]): the position inserts tokens."""
    insert_labels: torch.Tensor
    """int64, same shape: 1 where the carry lists an insertion, 0 at other labelled positions,
    -100 elsewhere."""
    rank_cols: torch.Tensor | None
    """Training with `carry.negatives`: int64 [B, R, P], the `logits` column of each negative's
    position (-1 where unused); those columns carry no label. None otherwise."""
    rank_tokens: torch.Tensor | None
    """int64 [B, R, P]: the negatives' new first tokens (-1 where unused)."""
    slot_logits: torch.Tensor | None
    """[M, K - 1, V] inserted-token logits of the carry's insertions (valid rows), None if none."""
    slot_labels: torch.Tensor
    """int64 [M, K - 1] their labels."""
    slot_rows: torch.Tensor
    """[M] row of each entry."""
    slot_cols: torch.Tensor
    """[M] its column in the `logits`/`labels` coordinates."""
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

    def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, backend: str, slots: int = 4,
                 max_insertions: int = 16):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.slots = slots
        self.max_insertions = max_insertions
        self.core = HRMCore(cfg, vocab_size, seq_len, backend, slots)
        self.trim_padding = True
        """With `cfg.mask_padding`, `labels_only` steps (training, `evaluate_arrays`) run each
        segment on the carry's `active_width` columns only (`_trimmed_width`). The masked padding
        never reaches a real position, so the losses and the real positions' states are those of
        the full width (tests/model/test_padding.py); a plain attribute so tests can switch it."""

    def _trimmed_width(self, carry: ActCarry, labels_only: bool) -> int:
        """The columns a step's segments run on: with `trim_padding`, `cfg.mask_padding` and
        `labels_only` (training, and `evaluate_arrays`), the carry's `active_width`; else all.
        The carry keeps its full width; the columns after it are padding of every valid row."""
        if labels_only and self.trim_padding and self.cfg.mask_padding:
            return active_width(carry.inputs, carry.valid)
        return carry.inputs.shape[1]

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
            inserts=torch.full((batch, self.max_insertions, self.slots), -100, dtype=torch.int64,
                               device=device).index_fill_(2, torch.zeros(1, dtype=torch.long, device=device), -1),
            valid=torch.zeros(batch, dtype=torch.bool, device=device),
            min_steps=torch.zeros(batch, dtype=torch.int32, device=device),
        )

    def forward(
        self, carry: ActCarry, *, L_cycles: int | None = None, gate_off: bool = False,
        halt_on_q: bool | None = None, max_steps: int | None = None, labels_only: bool = False,
    ) -> ActStepOutput:
        """Run one segment on every row. `halt_on_q` defaults to `self.training`.

        `labels_only` (the training loop): logits and labels cover only the batch's label columns
        [lo, hi) (`label_span`), which leaves losses and accuracies unchanged and saves the heads
        and their backward over the statement. In training with `model.head_positions` P, the
        columns are instead P positions per row (`pick_positions`): every edited position and a
        uniform sample of the kept ones, weighted by `keep_scale`. Inserted tokens are predicted at the carry's
        labelled insertions (teacher forcing). Segments run on `_trimmed_width` columns."""
        halt_max = max_steps or self.cfg.halt_max_steps
        use_q = self.training if halt_on_q is None else halt_on_q
        z_H, z_L = self.core.reset_rows(carry.fresh, carry.z_H, carry.z_L)
        labels, span, picked, keep_scale = carry.labels, None, None, None
        positions = torch.where(carry.valid.view(-1, 1), carry.inserts[:, :, 0],
                                torch.full_like(carry.inserts[:, :, 0], -1))
        slot_rows, slot_idx = (positions >= 0).nonzero(as_tuple=True)
        slot_labels = carry.inserts[slot_rows, slot_idx, 1:]
        slot_pos = positions[slot_rows, slot_idx]
        rank_cols = rank_tokens = None
        negatives = carry.negatives if (self.training and labels_only) else None
        if labels_only:
            span = label_span(carry.labels, carry.valid)
            if self.training and self.cfg.head_positions:
                picked, keep_scale = pick_positions(carry, positions, self.cfg.head_positions)
                labels = torch.where(picked >= 0, carry.labels.gather(1, picked.clamp_min(0)),
                                     torch.full_like(picked, IGNORE_INDEX))
                slot_cols = (picked[slot_rows] == slot_pos.unsqueeze(1)).int().argmax(1)
                if negatives is not None:
                    picked, labels, rank_cols, rank_tokens = negative_columns(negatives, carry.valid, picked, labels)
                own_tokens = carry.inputs.gather(1, picked.clamp_min(0))
            else:
                labels = carry.labels[:, span[0] : span[1]]
                slot_cols = slot_pos - span[0]
                own_tokens = carry.inputs[:, span[0] : span[1]]
                if negatives is not None:
                    _, _, rank_cols, rank_tokens = negative_columns(negatives, carry.valid, None, None, span[0])
        else:
            slot_cols = slot_pos
            own_tokens = carry.inputs
        insert_labels = torch.where(labels != IGNORE_INDEX, torch.zeros_like(labels), labels)
        insert_labels[slot_rows, slot_cols] = 1
        bootstrap = self.training and self.cfg.q_target == "bootstrap" and halt_max > 1
        reuse = bootstrap and self.cfg.bootstrap_reuse
        primed = carry.primed & ~carry.fresh if (reuse and carry.primed is not None) else None
        width = self._trimmed_width(carry, labels_only)
        inputs = carry.inputs[:, :width]
        seg = self.core.segment(z_H[:, :width], z_L[:, :width], inputs, L_cycles=L_cycles, gate_off=gate_off,
                                head_span=span, primed=primed, slot_positions=positions, head_positions=picked)
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
                nxt = self.core.segment(seg.z_H, seg.z_L, inputs, L_cycles=L_cycles, gate_off=gate_off,
                                lm_head=False, return_prefix=reuse, carry_out=False)
                target_q_continue = torch.sigmoid(torch.where(is_last, nxt.q_halt,
                                                              torch.maximum(nxt.q_halt, nxt.q_continue)))
                if reuse:
                    next_z = nxt.prefix
            if width < carry.inputs.shape[1]:  # back to the carry's width (the rest is never read)
                next_z = tuple(torch.cat((new, old[:, width:]), dim=1)
                               for new, old in zip(next_z, (z_H, z_L), strict=True))
        new_carry = replace(carry, z_H=next_z[0], z_L=next_z[1], steps=steps, halted=halted,
                            fresh=torch.zeros_like(carry.fresh),
                            primed=torch.full_like(carry.fresh, reuse))
        return ActStepOutput(
            carry=new_carry,
            logits=seg.logits,
            own_tokens=own_tokens,
            keep_scale=keep_scale,
            insert_logits=seg.insert_logits,
            insert_labels=insert_labels,
            rank_cols=rank_cols,
            rank_tokens=rank_tokens,
            slot_logits=seg.slot_logits,
            slot_labels=slot_labels,
            slot_rows=slot_rows,
            slot_cols=slot_cols,
            q_halt=seg.q_halt,
            q_continue=seg.q_continue,
            target_q_continue=target_q_continue,
            inputs=carry.inputs,
            labels=labels,
            valid=carry.valid,
            steps=steps,
            feedback_ratio=seg.feedback_ratio,
        )
