"""The model against each baseline on the same rows: paired differences.

The model and its baselines are scored on the same rows, and their outcomes are correlated (the
n-gram model and the untrained model rank the very rewrites the model ranks). Whether the model
repairs more than a baseline is a question about the rows where the two differ, so the evidence is
the per-row difference: its mean (the difference of the two rates), a percentile bootstrap 95%
interval that resamples rows (both systems' outcomes of a row together), and the discordant rows
(`model_only`: the model right and the baseline wrong; `baseline_only`: the reverse). The gate's
primary rule (docs/gate.md) asks for the interval to lie above 0 against every baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAIRED_SAMPLES = 2000


def paired_difference(model: Sequence[bool], baseline: Sequence[bool], *,
                      samples: int = PAIRED_SAMPLES, seed: int = 0) -> dict[str, float | list[float]]:
    """Mean of model - baseline over rows, its bootstrap 95% interval, the discordant counts."""
    if len(model) != len(baseline):
        raise ValueError(f"paired outcomes of different lengths: {len(model)} model rows, "
                         f"{len(baseline)} baseline rows")
    if not model:
        raise ValueError("no rows to pair")
    diff = np.asarray(model, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    return {"difference": float(diff.mean()),
            "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "model_only": float((diff > 0).sum()), "baseline_only": float((diff < 0).sum())}


def paired_metrics(model: dict[str, Sequence[bool]], baseline: dict[str, Sequence[bool]]
                   ) -> dict[str, dict[str, float | list[float]]]:
    """`paired_difference` of every metric both systems have per-row outcomes for."""
    return {name: paired_difference(model[name], baseline[name])
            for name in sorted(model) if name in baseline}
