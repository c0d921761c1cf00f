"""`hrm.eval.proposals`: per-position options from a real model's heads, the greedy fix with
`min_edits`, and the exact best-first enumeration of joint candidates."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from hrm.eval.proposals import Option, RowProposal, row_options


def _random_proposal(seed: int, positions: int = 4) -> RowProposal:
    rng = random.Random(seed)
    options = {}
    for p in range(positions):
        outs = [(p,), (), (100 + p,), (p, 7)]
        opts = [Option(o, -rng.random() * 5, k == 0) for k, o in enumerate(outs)]
        options[10 + p] = sorted(opts, key=lambda o: -o.logp)
    return RowProposal(options, {p: 0.5 for p in options}, 0.0, rank=list(options))


@pytest.mark.parametrize("seed", range(5))
def test_candidates_are_every_joint_choice_best_first(seed):
    """Against brute force: all 4^4 joint choices, scored by summed log-probability, the all-keep
    one left out, in order."""
    prop = _random_proposal(seed)
    brute = []
    for choice in itertools.product(*(prop.options[p] for p in prop.rank)):
        chosen = {p: o.output for p, o in zip(prop.rank, choice, strict=True) if not o.keep}
        if chosen:
            brute.append((chosen, sum(o.logp for o in choice)))
    brute.sort(key=lambda c: -c[1])
    got = prop.joint_candidates(1000)
    assert len(got) == len(brute) == 4 ** 4 - 1
    assert [lp for _c, lp in got] == pytest.approx([lp for _c, lp in brute])
    assert got[:20] == [(c, pytest.approx(lp)) for c, lp in brute[:20]]
    assert prop.joint_candidates(3) == got[:3]


@pytest.mark.parametrize("seed", range(3))
def test_candidates_are_the_single_edits_first_then_the_joint_ones(seed):
    """Against brute force: every one-position change (4 positions x 3 changes) ranked by its
    joint log-probability (the others kept), then the multi-position choices best first; none
    repeated, none the unchanged code."""
    prop = _random_proposal(seed)
    singles, multi = [], []
    for choice in itertools.product(*(prop.options[p] for p in prop.rank)):
        chosen = {p: o.output for p, o in zip(prop.rank, choice, strict=True) if not o.keep}
        lp = sum(o.logp for o in choice)
        (singles if len(chosen) == 1 else multi if chosen else []).append((chosen, lp))
    singles.sort(key=lambda c: -c[1])
    multi.sort(key=lambda c: -c[1])
    got = prop.candidates(1000)
    assert len(got) == 4 ** 4 - 1
    assert [c for c, _ in got[:12]] == [c for c, _ in singles]
    assert [lp for _, lp in got[:12]] == pytest.approx([lp for _, lp in singles])
    assert [lp for _, lp in got[12:]] == pytest.approx([lp for _, lp in multi])
    assert prop.candidates(5) == got[:5]


def test_greedy_is_the_best_single_edit_unless_more_are_allowed():
    keep_best = {
        1: [Option((5,), -0.1, True), Option((6,), -3.0, False)],
        2: [Option((7,), -0.2, True), Option((), -0.9, False)],  # best gain: -0.7
        3: [Option((9,), -0.3, True), Option((9, 4), -1.5, False)],
    }
    prop = RowProposal(keep_best, {}, 0.0, rank=[2, 3, 1])
    # every position keeps best, yet a fix changes something: the cheapest change
    assert prop.greedy() == prop.greedy(max_edits=None) == {2: ()}
    changed = dict(keep_best)
    changed[1] = [Option((6,), -0.05, False), Option((5,), -0.1, True)]  # gain +0.05
    changed[3] = [Option((9, 4), -0.1, False), Option((9,), -0.3, True)]  # gain +0.2
    prop = RowProposal(changed, {}, 0.0, rank=[1, 2, 3])
    assert prop.greedy() == {3: (9, 4)}
    assert prop.greedy(max_edits=2) == prop.greedy(max_edits=None) == {3: (9, 4), 1: (6,)}


def test_row_options_follow_the_heads():
    """keep = log p(own) + log(1 - p_ins); replace = log p(t) + log(1 - p_ins); delete = the mask
    token's; insert = log p(own) + log p_ins + the inserted tokens'. The anchor never replaces."""
    logp = torch.log_softmax(torch.tensor([0.0, 2.0, 1.0, 0.5, -1.0]), dim=-1)
    ins = -1.0
    log_ins, log_no = math.log(1 / (1 + math.e)), math.log(1 - 1 / (1 + math.e))
    opts = row_options(logp, ins, ((3, 3), -0.7), 2, anchor=False, delete_id=4, alternatives=2)
    by_out = {o.output: o for o in opts}
    assert by_out[(2,)].keep and by_out[(2,)].logp == pytest.approx(float(logp[2]) + log_no)
    assert by_out[(1,)].logp == pytest.approx(float(logp[1]) + log_no)
    assert by_out[(2, 3, 3)].logp == pytest.approx(float(logp[2]) + log_ins - 0.7)
    assert [o.logp for o in opts] == sorted((o.logp for o in opts), reverse=True)
    # top-3 tokens are 1, 2 (own, skipped) and 3: replacements by 1 and 3, no delete offered
    assert set(by_out) == {(2,), (1,), (3,), (2, 3, 3)}
    deleting = row_options(torch.log_softmax(torch.tensor([0.0, 0.0, 1.0, 0.0, 3.0]), dim=-1),
                           ins, ((), 0.0), 2, anchor=False, delete_id=4, alternatives=1)
    assert deleting[0].output == () and not deleting[0].keep
    anchor = row_options(logp, ins, ((3,), -0.2), 1, anchor=True, delete_id=4, alternatives=3)
    assert {o.output for o in anchor} == {(), (3,)}  # keep (nothing) or insert before the code
