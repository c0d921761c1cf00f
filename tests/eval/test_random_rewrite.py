"""The chance level the untrained model's own pick is shown beside
(`baselines.untrained_alone.random_rewrite_exact_accuracy`)."""

from __future__ import annotations

import pytest

from hrm.eval.evaluate import random_rewrite_exact


def test_a_random_rewrite_is_right_in_expectation_by_its_share_of_the_rewrites():
    """Row 0: the fix is 1 of 4 rewrites; row 1: 2 of 2 (both rewrites fix it); row 2: none;
    row 3 has no rewrites (it counts 0): (1/4 + 1 + 0 + 0) / 4."""
    from hrm.eval.proposals import RowProposal

    def prop(*outs):
        return RowProposal(options={}, change_prob={}, q_halt=0.0,
                           rewrites=[(0.0, "k", {1: (o,)}) for o in outs])

    fixes = {0: {7}, 1: {3, 4}, 2: {9}, 3: {1}}
    rows = [prop(7, 8, 9, 10), prop(3, 4), prop(5), prop()]
    got = random_rewrite_exact(rows, lambda i, outputs: outputs[1][0] in fixes[i])
    assert got == pytest.approx((1 / 4 + 1) / 4)
    assert random_rewrite_exact([prop(), prop()], lambda i, o: True) is None
