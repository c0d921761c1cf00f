"""PASS_TO_PASS is drawn so that a test failing once by chance leaves no trace in the row."""

from __future__ import annotations

import random

from hrm.synth.generator import pass_to_pass, pass_to_pass_order

BASELINE = [f"tests/test_m.py::test_{i}" for i in range(40)]


def test_order_is_a_fixed_permutation_per_patch_hash():
    order = pass_to_pass_order(BASELINE, "1a2b3c4d")
    assert sorted(order) == sorted(BASELINE) and order != sorted(BASELINE)
    assert pass_to_pass_order(list(reversed(BASELINE)), "1a2b3c4d") == order
    assert pass_to_pass_order(BASELINE, "ffffffff") != order


def test_a_failure_that_does_not_repeat_leaves_the_draw_as_without_it():
    rng = random.Random(0)
    for trial in range(200):
        order = pass_to_pass_order(BASELINE, f"{trial:08x}")
        confirmed = rng.sample(BASELINE, rng.randint(1, 3))
        flaky = rng.sample([t for t in BASELINE if t not in confirmed], rng.randint(0, 3))
        first = pass_to_pass(order, confirmed + flaky, 10)
        final = pass_to_pass(order, confirmed, 10)
        # what the row keeps is what a run without the flake draws ...
        assert final == pass_to_pass(order, list(reversed(confirmed)), 10)
        assert len(final) == 10 and not set(final) & set(confirmed)
        # ... and every test of it ran in the confirmation (first draw or first-run failure)
        assert set(final) <= set(first) | set(flaky)
        if not set(flaky) & set(order[:10 + len(confirmed)]):
            assert final == first  # a flake outside the draw changes nothing at all
