"""The location (pointer) loss and the rewrite loss of `hrm.model.losses`, by hand and by what
they teach: gradient steps on them move the change ranking to the bug and the rewrite to the
right token, which the per-position loss alone does not do as directly."""

from __future__ import annotations

import math

import pytest
import torch

from hrm.model.losses import act_losses, change_logits, pointer_loss, rewrite_loss


def _row(logits_rows: list[list[float]], own: list[int], labels: list[int]):
    logits = torch.tensor([logits_rows], dtype=torch.float32)
    return logits, torch.tensor([own]), torch.tensor([labels]), torch.zeros(1, len(own))


def test_change_logits_are_the_log_odds_of_not_keeping():
    logits, own, _labels, ins = _row([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0, 1], [0, 1])
    ins[0, 1] = 1.0
    got = change_logits(logits, own, ins)[0]
    p_keep0 = math.exp(2) / (math.exp(2) + 2) * 0.5  # insert logit 0: P(no insert) = 1/2
    p_keep1 = (1 / 3) * (1 / (1 + math.e))
    assert got.tolist() == pytest.approx([math.log((1 - p_keep0) / p_keep0), math.log((1 - p_keep1) / p_keep1)],
                                         rel=1e-5)


def test_pointer_loss_by_hand_and_its_sampling_weights():
    """-log(e^{s_bug} / sum_i w_i e^{s_i}) with w = 1 for edited positions and keep_scale for kept
    ones; a row without an edit, or an invalid row, adds nothing; the mean is over n_rows."""
    logits = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]],
                           [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    own = torch.tensor([[0, 1, 2], [0, 1, 2]])
    ins = torch.zeros(2, 3)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    edited = torch.tensor([[False, True, False], [False, False, False]])
    keep_w = torch.tensor([[2.0], [1.0]]).expand(2, 3)
    s = change_logits(logits, own, ins)[0]
    expected = -(s[1] - torch.log(2 * torch.exp(s[0]) + torch.exp(s[1]) + 2 * torch.exp(s[2])))
    got = pointer_loss(logits, own, ins, mask, edited, keep_w, torch.tensor([True, True]), 2.0)
    assert float(got) == pytest.approx(float(expected) / 2, rel=1e-5)
    # The sample weight stands for copies: weight 2 on position 0 = position 0 present twice.
    dup = pointer_loss(logits[:1, [0, 0, 1, 2, 2]], own[:1, [0, 0, 1, 2, 2]], torch.zeros(1, 5),
                       torch.ones(1, 5, dtype=torch.bool), torch.tensor([[False, False, True, False, False]]),
                       torch.ones(1, 5), torch.tensor([True]), 1.0)
    assert float(dup) == pytest.approx(float(expected), rel=1e-5)
    invalid = pointer_loss(logits, own, ins, mask, edited, keep_w, torch.tensor([False, True]), 2.0)
    assert float(invalid) == 0.0


def test_rewrite_loss_excludes_the_own_token():
    """The new token's cross-entropy among the tokens other than the position's own: a model
    sure of keeping loses nothing there."""
    logits, own, labels, _ins = _row([[9.0, 1.0, 0.0], [0.0, 5.0, 0.0]], [0, 1], [1, 1])
    edited = torch.tensor([[True, False]])
    got = rewrite_loss(logits, labels, own, edited, 1.0)
    assert float(got) == pytest.approx(-math.log(math.e / (math.e + 1)), rel=1e-5)
    assert float(rewrite_loss(logits, labels, own, torch.zeros_like(edited), 1.0)) == 0.0


def test_training_on_location_and_rewrite_finds_the_bug():
    """Free logits over 6 positions start keeping everything (copy bias); 60 SGD steps on the
    total loss with `pointer_weight` make the bug's position the most likely change and its right
    token the best option there, with a wider margin over the other positions than the
    per-position loss alone gives at the same steps."""
    torch.manual_seed(0)
    own = torch.tensor([[3, 4, 5, 3, 4, 5]])
    labels = own.clone()
    labels[0, 4] = 2  # the bug: position 4 should hold token 2

    def train(weight: float) -> torch.Tensor:
        base = torch.randn(1, 6, 8) * 0.1
        base.scatter_add_(-1, own.unsqueeze(-1), torch.full((1, 6, 1), 4.0))
        logits = base.clone().requires_grad_(True)
        ins = torch.full((1, 6), -5.0)
        opt = torch.optim.SGD([logits], lr=0.5)
        for _ in range(60):
            opt.zero_grad()
            parts = act_losses(logits, labels, torch.tensor([True]), torch.zeros(1), torch.zeros(1), None,
                               own_tokens=own, insert_logits=ins, insert_labels=torch.zeros_like(own),
                               slot_logits=None, slot_labels=torch.zeros(0, 3, dtype=torch.long),
                               slot_rows=torch.zeros(0, dtype=torch.long), slot_cols=torch.zeros(0, dtype=torch.long),
                               q_weight=0.0, pointer_weight=weight)
            parts.total.backward()
            opt.step()
        return logits.detach()

    located = train(1.0)
    assert int(change_logits(located, own, torch.full((1, 6), -5.0))[0].argmax()) == 4
    assert int(located[0, 4].argmax()) == 2
    plain = train(0.0)
    s_plain = change_logits(plain, own, torch.full((1, 6), -5.0))[0]
    s_loc = change_logits(located, own, torch.full((1, 6), -5.0))[0]
    # the margin of the bug over the best other position is larger with the location loss
    margin = lambda s: float(s[4] - torch.cat((s[:4], s[5:])).max())  # noqa: E731
    assert margin(s_loc) > margin(s_plain)
