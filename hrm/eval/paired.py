"""The model against each baseline on the same rows: paired differences.

The model and its baselines are scored on the same rows, and their outcomes are correlated (the
n-gram model and the untrained model rank the very rewrites the model ranks). Whether the model
repairs more than a baseline is a question about the rows where the two differ, so the evidence is
the per-row difference: its mean (the difference of the two rates), a percentile bootstrap 95%
interval that resamples rows (both systems' outcomes of a row together; descriptive), the
discordant rows (`model_only`: the model right and the baseline wrong; `baseline_only`: the
reverse) and `p_value`, McNemar's exact test on them, one-sided (the model better): the chance of
at least `model_only` of the discordant rows going the model's way if each went either way with
probability 1/2. The gate's primary rule (docs/gate.md) asks for p <= 0.025 against every
baseline that repairs anything. The exact test, not the bootstrap interval, decides: with few
discordant rows the percentile bootstrap is too narrow (9 rows to 2 gives an interval above 0,
while p = 0.033).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PAIRED_SAMPLES = 2000
SIGNIFICANCE = 0.025
"""One-sided level of the gate's paired test: the lower end of a two-sided 95% interval."""


def exact_sign_p(model_only: int, baseline_only: int) -> float:
    """McNemar's exact test, one-sided: P(X >= model_only) for X ~ Binomial(model_only +
    baseline_only, 1/2); 1.0 when no row differs."""
    if model_only < 0 or baseline_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {model_only} and {baseline_only}")
    n = model_only + baseline_only
    return sum(math.comb(n, k) for k in range(model_only, n + 1)) / 2 ** n


def paired_difference(model: Sequence[bool], baseline: Sequence[bool], *,
                      samples: int = PAIRED_SAMPLES, seed: int = 0) -> dict[str, float | list[float]]:
    """Mean of model - baseline over rows, its bootstrap 95% interval, the discordant counts."""
    if len(model) != len(baseline):
        raise ValueError(f"paired outcomes of different lengths: {len(model)} model rows, "
                         f"{len(baseline)} baseline rows")
    if len(model) == 0:
        raise ValueError("no rows to pair")
    diff = np.asarray(model, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    model_only, baseline_only = int((diff > 0).sum()), int((diff < 0).sum())
    return {"difference": float(diff.mean()),
            "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "model_only": float(model_only), "baseline_only": float(baseline_only),
            "p_value": exact_sign_p(model_only, baseline_only)}


def paired_metrics(model: dict[str, Sequence[bool]], baseline: dict[str, Sequence[bool]]
                   ) -> dict[str, dict[str, float | list[float]]]:
    """`paired_difference` of every metric both systems have per-row outcomes for."""
    return {name: paired_difference(model[name], baseline[name])
            for name in sorted(model) if name in baseline}
