"""Losses: the edit loss (per labelled position: the first output token's cross-entropy, softmax or
stablemax, the insert decision's binary cross-entropy, and an inserting position's inserted
tokens' cross-entropy), in fp32, and the two binary Q losses;
`total = lm + q_weight * (q_halt + q_continue)`.

Normalisation: the edit ("lm") loss is the sum of position losses divided by `lm_denominator`
(by default the number of labelled positions of valid rows, i.e. a mean per position). Under DDP the caller passes
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


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends."""
    x = x.clamp_max(-1e-7)
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def keep_log_probs(first_logp: torch.Tensor, own_tokens: torch.Tensor, insert_logits: torch.Tensor
                   ) -> torch.Tensor:
    """log P(keep) per position from first-token log-probabilities [..., V]: P(first token is its
    own) x P(no insertion). The one definition training's location loss and the proposals'
    ranking (`hrm.eval.proposals`) share."""
    own_lp = first_logp.gather(-1, own_tokens.long().unsqueeze(-1).to(first_logp.device)).squeeze(-1)
    return own_lp + F.logsigmoid(-insert_logits.float())


def change_logits(logits: torch.Tensor, own_tokens: torch.Tensor, insert_logits: torch.Tensor) -> torch.Tensor:
    """Per position, the log-odds that its output is not "keep" (fp32; `keep_log_probs`)."""
    keep_lp = keep_log_probs(torch.log_softmax(logits.float(), -1), own_tokens, insert_logits)
    return log1mexp(keep_lp) - keep_lp


def pointer_loss(logits, own_tokens, insert_logits, mask, edited, keep_w, valid, n_rows) -> torch.Tensor:
    """BugLab-style location loss: per row with an edit, the negative log of the share of the
    row's change-odds mass (a softmax over its labelled positions of `change_logits`) that falls on
    its edited positions. A sampled kept position stands for `keep_w` of them (log weight added),
    so the normaliser estimates the all-positions one. Mean over rows (`n_rows`)."""
    score = change_logits(logits, own_tokens, insert_logits)
    neg = torch.full_like(score, float("-inf"))
    weighted = torch.where(mask, score + torch.where(edited, torch.zeros_like(keep_w), keep_w.log()), neg)
    hit = torch.logsumexp(torch.where(edited, score, neg), -1)
    rows = edited.any(-1) & valid
    per_row = torch.logsumexp(weighted, -1) - hit
    return torch.where(rows, per_row, torch.zeros_like(per_row)).sum() / n_rows


def rewrite_loss(logits, labels, own_tokens, edited, n_rows) -> torch.Tensor:
    """At each position whose first token changes, the cross-entropy of its new token among the
    tokens other than its own (the rewrite given the location): the location loss says where,
    this says what, without the keep option competing. Summed per row, mean over rows."""
    replaced = edited & (labels != own_tokens) & (labels >= 0)
    if not bool(replaced.any()):
        return torch.zeros((), device=logits.device)
    x = logits.float().scatter(-1, own_tokens.long().unsqueeze(-1), float("-inf"))
    ce = F.cross_entropy(x[replaced], labels[replaced], reduction="sum")
    return ce / n_rows


def rank_loss(logits, labels, own_tokens, edited, inserting, rank_cols, rank_tokens, valid, n_rows
              ) -> torch.Tensor:
    """The listwise rewrite loss (`hrm.train.negatives`): per row, the cross-entropy of the fix
    in a softmax over {the fix, the row's wrong rewrites} of their gains, the score the
    evaluation ranks rewrites by (`hrm.eval.proposals`): log P(output) - log P(keep) summed over
    the changed positions, here each position's new first token against its own (the insert
    terms cancel for a replacement or a deletion). Only rows whose fix has the negatives' form
    count (replacements and deletions at up to P positions, where P is the negatives' width, and
    at least one negative): a long or inserting fix has no comparable alternatives, and
    "no change" is not a candidate (every row holds a bug; with it, the loss would push the own
    token's probability down without bound). Sum over rows, divided by `n_rows`."""
    x = logits.float()  # a difference of logits at one position is one of log-probabilities
    own = own_tokens.long()
    first = x.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) - x.gather(-1, own.unsqueeze(-1)).squeeze(-1)
    fix_gain = torch.where(edited, first, torch.zeros_like(first)).sum(-1)
    used = rank_cols >= 0
    cols = rank_cols.clamp_min(0).flatten(1)
    at = x.gather(1, cols.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # [B, R*P, V]
    term = at.gather(-1, rank_tokens.clamp_min(0).flatten(1).unsqueeze(-1)).squeeze(-1) - \
        at.gather(-1, own.gather(1, cols).unsqueeze(-1)).squeeze(-1)
    neg_gain = torch.where(used.flatten(1), term, torch.zeros_like(term)).view(rank_cols.shape).sum(-1)
    has_neg = used.any(-1)
    neg_gain = torch.where(has_neg, neg_gain, torch.full_like(neg_gain, float("-inf")))
    per_row = torch.logsumexp(torch.cat([fix_gain.unsqueeze(1), neg_gain], 1), 1) - fix_gain
    rows = (valid & edited.any(-1) & (edited.sum(-1) <= rank_cols.shape[-1]) & ~inserting.any(-1)
            & has_neg.any(-1))
    return torch.where(rows, per_row, torch.zeros_like(per_row)).sum() / n_rows


@dataclass
class LossParts:
    total: torch.Tensor
    lm: torch.Tensor
    """Sum over labelled positions of the position's negative log-likelihood (first token's
    cross-entropy, the insert decision's binary cross-entropy, and for an inserting position the
    inserted tokens' cross-entropy), edited positions weighted by `edit_weight`, divided by
    `lm_denominator` (default: the number of labelled positions)."""
    q_halt: torch.Tensor
    q_continue: torch.Tensor
    seq_correct: torch.Tensor
    """bool [B]: every labelled position predicted correctly (the q_halt target)."""
    token_correct: torch.Tensor
    """bool [B, S]: the position's first token and insert decision are right, and its inserted
    tokens when it inserts (False outside labels)."""
    label_mask: torch.Tensor
    """bool [B, S]: label positions of valid rows."""
    edited_mask: torch.Tensor
    """bool [B, S]: label positions whose output is not their own token."""
    count_weight: torch.Tensor
    """float [B, S]: how many labelled positions each column stands for (1, or `keep_scale`
    for a sampled kept one; 0 outside labels): weights of accuracy counts."""


def slot_scores(slot_logits: torch.Tensor | None, slot_labels: torch.Tensor, kind: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed token loss [M], all slots right [M]) of the inserted tokens."""
    if slot_logits is None or slot_labels.numel() == 0:
        empty = slot_labels.new_zeros(slot_labels.shape[0])
        return empty.float(), empty.bool() | True
    loss = token_losses(slot_logits, slot_labels, kind).sum(-1)
    mask = slot_labels != IGNORE_INDEX
    right = ((slot_logits.argmax(-1) == slot_labels) | ~mask).all(-1)
    return loss, right


def act_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    q_halt: torch.Tensor,
    q_continue: torch.Tensor,
    target_q_continue: torch.Tensor | None,
    *,
    own_tokens: torch.Tensor,
    insert_logits: torch.Tensor,
    insert_labels: torch.Tensor,
    slot_logits: torch.Tensor | None,
    slot_labels: torch.Tensor,
    slot_rows: torch.Tensor,
    slot_cols: torch.Tensor,
    q_weight: float,
    kind: str = "softmax",
    edit_weight: float = 1.0,
    keep_scale: torch.Tensor | None = None,
    lm_denominator: float | torch.Tensor | None = None,
    row_denominator: float | torch.Tensor | None = None,
    pointer_weight: float = 0.0,
    rank_cols: torch.Tensor | None = None,
    rank_tokens: torch.Tensor | None = None,
    rank_weight: float = 0.0,
) -> LossParts:
    """All training losses of one ACT segment; invalid rows contribute nothing.

    Over S label columns: `logits` [B, S, V] first-token logits and `labels` [B, S] (-100:
    none), `own_tokens` [B, S] the tokens the positions hold, `insert_logits`/`insert_labels`
    [B, S] (1: the position inserts); `slot_logits` [M, K - 1, V] and `slot_labels` [M, K - 1]
    for the M inserting positions at (`slot_rows`, `slot_cols`). `keep_scale` [B, 1]: weight
    of a kept position (training's sample of them, `hrm.model.act.pick_positions`).
    `rank_cols`/`rank_tokens` [B, R, P]: the rows' wrong rewrites for `rank_loss` (weight
    `rank_weight`).
    """
    labels = torch.where(valid.view(-1, 1), labels, torch.full_like(labels, IGNORE_INDEX))
    mask = labels != IGNORE_INDEX
    first = token_losses(logits, labels, kind)
    ins_target = (insert_labels == 1) & mask
    ins = F.binary_cross_entropy_with_logits(insert_logits.float(), ins_target.float(), reduction="none") * mask
    slot_loss, slot_right = slot_scores(slot_logits, slot_labels, kind)
    keep_rows = valid[slot_rows] if slot_rows.numel() else slot_rows.bool()
    edited = mask & ((labels != own_tokens) | ins_target)
    keep_w = keep_scale.float().expand_as(first) if keep_scale is not None else torch.ones_like(first)
    weights = torch.where(edited, torch.full_like(first, edit_weight), keep_w)
    n_tokens = lm_denominator if lm_denominator is not None else mask.sum().clamp_min(1)
    lm = (((first + ins) * weights).sum() + edit_weight * (slot_loss * keep_rows).sum()) / n_tokens
    with torch.no_grad():
        right = (logits.argmax(-1) == labels) & ((insert_logits > 0) == ins_target) & mask
        if slot_rows.numel():
            right[slot_rows, slot_cols] &= slot_right
        token_correct = right
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
    pointer = (pointer_loss(logits, own_tokens, insert_logits, mask, edited, keep_w, valid, n_rows)
               + rewrite_loss(logits, labels, own_tokens, edited, n_rows)) \
        if pointer_weight > 0 else torch.zeros((), device=logits.device)
    rank = rank_loss(logits, labels, own_tokens, edited, ins_target, rank_cols, rank_tokens, valid, n_rows) \
        if rank_weight > 0 and rank_cols is not None else torch.zeros((), device=logits.device)
    total = lm + pointer_weight * pointer + rank_weight * rank + q_weight * (q_halt_loss + q_cont_loss)
    count_w = torch.where(edited, torch.ones_like(first), keep_w) * mask
    return LossParts(total, lm, q_halt_loss, q_cont_loss, seq_correct, token_correct, mask, edited, count_w)
