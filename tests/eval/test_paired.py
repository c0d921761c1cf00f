"""The model minus a baseline on the same rows (`hrm.eval.paired`)."""

from __future__ import annotations

import pytest

from hrm.eval.metrics import bootstrap_ci
from hrm.eval.paired import exact_sign_p, paired_difference, paired_metrics


def test_the_difference_counts_the_rows_where_the_two_differ():
    model = [True, True, False, True, False, False]
    baseline = [True, False, True, False, False, False]
    d = paired_difference(model, baseline)
    assert d["difference"] == pytest.approx(1 / 6)
    assert (d["model_only"], d["baseline_only"]) == (2.0, 1.0)
    assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
    assert d == paired_difference(model, baseline)  # seeded


def test_rows_both_get_right_or_wrong_carry_no_evidence():
    """A baseline that gets the same rows right gives a difference of exactly 0 with no spread,
    whatever the two rates are; against copying (0 everywhere) the interval is the model's own."""
    rows = [True] * 7 + [False] * 13
    assert paired_difference(rows, rows)["ci95"] == [0.0, 0.0]
    assert paired_difference(rows, [False] * 20)["ci95"] == bootstrap_ci(rows)


def test_pairing_is_tighter_than_comparing_two_intervals():
    """The same rates (0.6 against 0.4 on 50 rows): where the baseline's right rows are a subset
    of the model's the paired interval lies above 0; where they are disjoint it reaches it."""
    model = [True] * 30 + [False] * 20
    nested = [True] * 20 + [False] * 30
    disjoint = [False] * 30 + [True] * 20
    assert paired_difference(model, nested)["ci95"][0] > 0
    assert paired_difference(model, disjoint)["ci95"][0] < 0


def test_paired_metrics_only_where_both_systems_have_outcomes():
    model = {"exact_accuracy": [True, False], "resolved_rate": [True, True]}
    got = paired_metrics(model, {"exact_accuracy": [False, False]})
    assert set(got) == {"exact_accuracy"} and got["exact_accuracy"]["difference"] == 0.5


@pytest.mark.parametrize("model, baseline, match", [([True], [True, False], "different lengths"),
                                                     ([], [], "no rows")])
def test_unpairable_outcomes_are_errors(model, baseline, match):
    with pytest.raises(ValueError, match=match):
        paired_difference(model, baseline)



def test_the_exact_test_counts_only_the_rows_that_differ():
    """One-sided McNemar: P(at least k of n discordant rows favour the model | a fair coin)."""
    assert exact_sign_p(0, 0) == 1.0
    assert exact_sign_p(4, 0) == 1 / 16
    assert exact_sign_p(8, 1) == pytest.approx(10 / 512)
    assert exact_sign_p(9, 2) == pytest.approx(67 / 2048)  # above 0.025: not shown
    assert exact_sign_p(2, 9) == pytest.approx(1 - 12 / 2048)
    d = paired_difference([True] * 9 + [False] * 2 + [True] * 3, [False] * 9 + [True] * 2 + [True] * 3)
    assert d["p_value"] == pytest.approx(67 / 2048) and d["ci95"][0] > 0  # the bootstrap is narrower
    with pytest.raises(ValueError, match=">= 0"):
        exact_sign_p(-1, 2)
