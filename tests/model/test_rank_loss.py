"""The listwise rewrite loss (`hrm.model.losses.rank_loss`): by hand, equal to the gain the
evaluation ranks rewrites by (`hrm.eval.proposals`), which rows it counts, and what gradient
steps on it teach."""

from __future__ import annotations

import math

import pytest
import torch

from hrm.eval.proposals import _RowScorer
from hrm.model.losses import IGNORE_INDEX, rank_loss

MASK = 5  # the delete token of these rows


def _row(seed: int = 0):
    """One row of 4 labelled columns over a vocabulary of 6: position 1 is the bug (1 -> 4);
    negatives (width 2): position 2 -> 0, and position 0 -> 1 with 3 deleted."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 4, 6, generator=g)
    own = torch.tensor([[0, 1, 2, 3]])
    labels = torch.tensor([[0, 4, 2, 3]])
    cols = torch.tensor([[[2, -1], [0, 3], [-1, -1]]])
    toks = torch.tensor([[[0, -1], [1, MASK], [-1, -1]]])
    return logits, own, labels, cols, toks


def _loss(logits, own, labels, cols, toks, *, inserting=None, valid=(True,)):
    inserting = torch.zeros_like(labels, dtype=torch.bool) if inserting is None else inserting
    edited = (labels != IGNORE_INDEX) & ((labels != own) | inserting)
    return rank_loss(logits, labels, own, edited, inserting, cols, toks, torch.tensor(valid), 1.0)


def _gains(logits):
    lp = torch.log_softmax(logits[0].detach(), -1)
    return (float(lp[1, 4] - lp[1, 1]), float(lp[2, 0] - lp[2, 2]),
            float(lp[0, 1] - lp[0, 0] + lp[3, MASK] - lp[3, 3]))


def test_rank_loss_by_hand_with_the_gains_the_evaluation_ranks_by():
    logits, own, labels, cols, toks = _row()
    g_fix, g_a, g_b = _gains(logits)
    expected = math.log(math.exp(g_fix) + math.exp(g_a) + math.exp(g_b)) - g_fix
    assert float(_loss(logits, own, labels, cols, toks)) == pytest.approx(expected, rel=1e-5)
    # The evaluation's gain of the same outputs from the same heads, any insert logits (they
    # cancel for replacements and deletions).
    lp = torch.log_softmax(logits[0], -1)
    scorer = _RowScorer(lp, torch.tensor([0.3, -1.2, 2.0, 0.1]), own[0], {}, set(), end_id=-1, delete_id=MASK)
    assert scorer.gain({1: (4,)}) == pytest.approx(g_fix, rel=1e-5)
    assert scorer.gain({2: (0,)}) == pytest.approx(g_a, rel=1e-5)
    assert scorer.gain({0: (1,), 3: ()}) == pytest.approx(g_b, rel=1e-5)


def test_rows_the_loss_does_not_count():
    """An invalid row, a row without an edit, without negatives, with an inserting fix, or with
    a fix of more positions than a negative can hold adds nothing."""
    logits, own, labels, cols, toks = _row(2)
    assert float(_loss(logits, own, labels, cols, toks)) > 0.0
    assert float(_loss(logits, own, labels, cols, toks, valid=(False,))) == 0.0
    assert float(_loss(logits, own, own.clone(), cols, toks)) == 0.0
    none = torch.full_like(cols, -1)
    assert float(_loss(logits, own, labels, none, none)) == 0.0
    assert float(_loss(logits, own, labels, cols, toks, inserting=torch.tensor([[False, True, False, False]]))) == 0.0
    long_fix = torch.tensor([[4, 4, 4, 3]])  # three changed positions, negatives two wide
    assert float(_loss(logits, own, long_fix, cols, toks)) == 0.0


def test_gradient_steps_rank_the_fix_first():
    """Starting with a wrong rewrite ranked first, steps on the loss alone make the fix the
    best-scored rewrite: the greedy fix."""
    logits, own, labels, cols, toks = _row(3)
    logits = logits.clone()
    logits[0, 2, 0] = 6.0  # the wrong rewrite at position 2 is very likely
    logits.requires_grad_(True)
    fix, wrong, other = _gains(logits)
    assert wrong > max(fix, other)
    opt = torch.optim.SGD([logits], lr=0.5)
    for _ in range(60):
        opt.zero_grad()
        _loss(logits, own, labels, cols, toks).backward()
        opt.step()
    fix, wrong, other = _gains(logits)
    assert fix > max(wrong, other) + 1.0
