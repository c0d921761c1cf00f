"""Curve fits recover known parameters; probabilities and failure modes behave."""

from __future__ import annotations

import numpy as np
import pytest

from hrm.gate.projection import MIN_POINTS, exp_decay, logistic, project

EPOCHS = np.arange(1, 31, dtype=float)


def test_exponential_decay_recovers_known_parameters():
    rng = np.random.default_rng(3)
    y = exp_decay(EPOCHS, 2.0, 0.15, 0.25) + rng.normal(0, 0.02, EPOCHS.size)
    p = project("loss", "exp_decay", EPOCHS.tolist(), y.tolist(), 50, samples=100)
    assert p.status == "ok" and p.r2 > 0.99
    assert p.params["a"] == pytest.approx(2.0, rel=0.08)
    assert p.params["b"] == pytest.approx(0.15, rel=0.1)
    assert p.params["c"] == pytest.approx(0.25, abs=0.03)
    truth = float(exp_decay(np.array([50.0]), 2.0, 0.15, 0.25)[0])
    assert p.interval[0] <= truth <= p.interval[1]
    assert p.interval[1] - p.interval[0] < 0.2  # informative, not the whole axis


def test_logistic_recovers_known_parameters():
    rng = np.random.default_rng(4)
    y = logistic(EPOCHS, 0.85, 0.3, 10.0) + rng.normal(0, 0.01, EPOCHS.size)
    p = project("token_accuracy", "logistic", EPOCHS.tolist(), y.tolist(), 50, samples=100)
    assert p.status == "ok"
    assert p.params["u"] == pytest.approx(0.85, abs=0.02)
    assert p.params["k"] == pytest.approx(0.3, rel=0.15)
    assert p.params["t0"] == pytest.approx(10.0, abs=0.7)


def test_probability_near_one_past_target_and_near_zero_when_flat_and_far():
    rng = np.random.default_rng(5)
    past = exp_decay(EPOCHS, 2.0, 0.3, 0.1) + rng.normal(0, 0.01, EPOCHS.size)
    p = project("loss", "exp_decay", EPOCHS.tolist(), past.tolist(), 50, samples=100)
    assert p.probability("<", 0.3) >= 0.95
    # a slow decay still far from the target at epoch 50
    far = exp_decay(EPOCHS, 1.0, 0.05, 1.5) + rng.normal(0, 0.01, EPOCHS.size)
    p = project("loss", "exp_decay", EPOCHS.tolist(), far.tolist(), 50, samples=50)
    assert p.status == "ok" and p.probability("<", 0.3) <= 0.05
    slow_acc = logistic(EPOCHS, 0.3, 0.3, 8.0) + rng.normal(0, 0.01, EPOCHS.size)
    p = project("token_accuracy", "logistic", EPOCHS.tolist(), slow_acc.tolist(), 50, samples=100)
    assert p.status == "ok" and p.probability(">", 0.8) <= 0.05
    # a curve halfway between: the probability is genuinely uncertain, neither 0 nor 1
    noisy = exp_decay(EPOCHS, 2.0, 0.1, 0.3) + rng.normal(0, 0.05, EPOCHS.size)
    p = project("loss", "exp_decay", EPOCHS.tolist(), noisy.tolist(), 50, samples=100)
    assert 0.1 < p.probability("<", 0.3) < 0.9


def test_too_few_points_is_reported_not_fitted():
    p = project("loss", "exp_decay", [1, 2, 3, 4], [2.0, 1.5, 1.2, 1.0], 50, samples=50)
    assert p.status == "too_few_points" and str(MIN_POINTS) in p.message
    assert p.projected is None and p.probability("<", 0.3) is None


def test_fit_that_cannot_converge_is_reported():
    # Non-finite data makes curve_fit refuse: reported as fit_failed, no projection.
    y = [2.0, 1.5, float("inf"), 1.0, 0.9, 0.8]
    p = project("loss", "exp_decay", list(range(1, 7)), y, 50, samples=20)
    assert p.status == "fit_failed" and "did not converge" in p.message
    assert p.probability("<", 0.3) is None


def test_weak_fit_is_poor_fit_without_probability():
    # noise around a constant: any curve explains almost none of it (R^2 far below 0.5)
    rng = np.random.default_rng(6)
    flat = 2.0 + rng.normal(0, 0.02, EPOCHS.size)
    p = project("loss", "exp_decay", EPOCHS.tolist(), flat.tolist(), 50, samples=50)
    assert p.status == "poor_fit" and "R^2 = " in p.message and "< 0.5" in p.message
    assert p.probability("<", 0.3) is None


def test_every_command_a_recommendation_names_exists():
    import re

    from typer.testing import CliRunner

    from hrm.cli import app
    from hrm.gate.rules import RECOMMENDATIONS

    named = [c for text in RECOMMENDATIONS.values() for c in re.findall(r"`(hrm [a-z ]+)`", text)]
    assert named == ["hrm data synth"]
    for command in named:
        done = CliRunner().invoke(app, [*command.split()[1:], "--help"])
        assert done.exit_code == 0, (command, done.output)
    assert CliRunner().invoke(app, ["envs", "synth", "--help"]).exit_code != 0  # the old, wrong name


def test_systematic_misfit_is_poor_fit_without_probability():
    # val loss that falls, then rises (overfitting): a decay curve misses it systematically
    rng = np.random.default_rng(7)
    u_shape = 1.0 + 0.004 * (EPOCHS - 12.0) ** 2 + rng.normal(0, 0.01, EPOCHS.size)
    p = project("val_lm_loss", "exp_decay", EPOCHS.tolist(), u_shape.tolist(), 50, samples=50)
    assert p.status == "poor_fit" and "runs test" in p.message
    assert p.probability("<", 0.3) is None
    assert p.params  # the fit is kept for the plot


def test_draws_stay_in_the_metric_range():
    rng = np.random.default_rng(8)
    near_zero = exp_decay(EPOCHS, 2.0, 0.4, 0.0) + np.abs(rng.normal(0, 0.05, EPOCHS.size))
    p = project("lm_loss", "exp_decay", EPOCHS.tolist(), near_zero.tolist(), 50, samples=100)
    assert p.draws and min(p.draws) >= 0.0 and p.interval[0] >= 0.0
    near_one = logistic(EPOCHS, 1.0, 0.5, 5.0) - np.abs(rng.normal(0, 0.02, EPOCHS.size))
    p = project("token_accuracy", "logistic", EPOCHS.tolist(), near_one.tolist(), 50, samples=100)
    assert p.draws and max(p.draws) <= 1.0 and p.interval[1] <= 1.0
