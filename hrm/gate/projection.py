"""Learning-curve projection: fit a curve, extrapolate to the target epoch, bootstrap an interval.

Loss follows exponential decay to an asymptote, `a * exp(-b t) + c`; accuracies follow a
logistic curve, `u / (1 + exp(-k (t - t0)))` with `u` <= 1. The interval comes from a
residual bootstrap: the fitted curve plus resampled residuals is refitted `samples` times, and
each refit's value at the target epoch, plus one more resampled residual (a single future
measurement is noisy too), is one draw. The probability of meeting a criterion is the share of
draws that meet it. Draws are clipped to the metric's range (a loss is >= 0, an accuracy lies
in [0, 1]). A fit that fails, too few points to fit, or a curve that misses the history
systematically is reported as such: the projection then carries no probability.

Systematic misfit is judged by the Wald-Wolfowitz runs test on the residual signs: a curve
that fits leaves residuals that change sign about as often as chance, one that does not (say
val loss falling then rising, fitted with a decay) leaves long runs of one sign. R² would
not do: a flat noisy curve is fitted well yet explains none of the (pure-noise) variance.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Model = Literal["exp_decay", "logistic"]

# A 3-parameter fit needs at least 2 residual degrees of freedom to say anything.
MIN_POINTS = 5
# If more than this share of bootstrap refits fail, the interval is not trustworthy.
MAX_FAILED_REFIT_SHARE = 0.5
# Runs-test z below this: far fewer residual sign changes than chance, i.e. systematic misfit.
MIN_RUNS_Z = -3.0
MIN_R2 = 0.5
"""A fit explaining less than half the variance of the history projects nothing (`poor_fit`)."""
# The values a metric can take: a loss is non-negative, an accuracy a share.
RANGES: dict[str, tuple[float, float]] = {"exp_decay": (0.0, math.inf), "logistic": (0.0, 1.0)}

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def exp_decay(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a * exp(-b t) + c: decays from c + a towards the asymptote c."""
    return a * np.exp(-b * t) + c


def logistic(t: np.ndarray, u: float, k: float, t0: float) -> np.ndarray:
    """u / (1 + exp(-k (t - t0))): rises towards the ceiling u."""
    return u / (1.0 + np.exp(-k * (t - t0)))


FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {"exp_decay": exp_decay, "logistic": logistic}
PARAM_NAMES: dict[str, tuple[str, str, str]] = {"exp_decay": ("a", "b", "c"), "logistic": ("u", "k", "t0")}


@dataclass
class Projection:
    """The fit of one series and its projection to `target_epoch`.

    `status`: `ok`, `too_few_points`, `fit_failed`, `unstable` (most bootstrap refits
    failed) or `poor_fit` (R^2 below `MIN_R2`, or residual runs test z below `MIN_RUNS_Z`). Only `ok` carries
    probabilities; `poor_fit` keeps its fit and interval for the plot.
    """

    series: str
    model: Model
    target_epoch: float
    n_points: int
    status: Literal["ok", "too_few_points", "fit_failed", "unstable", "poor_fit"]
    message: str
    params: dict[str, float] = field(default_factory=dict)
    r2: float | None = None
    residual_std: float | None = None
    projected: float | None = None
    interval: tuple[float, float] | None = None
    draws: list[float] = field(default_factory=list)
    boot_params: list[tuple[float, ...]] = field(default_factory=list)
    failed_refits: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def curve(self, t: np.ndarray) -> np.ndarray:
        """The fitted curve at `t` (only for a successful fit)."""
        if not self.params:
            raise ValueError(f"{self.series}: no fitted parameters ({self.status})")
        return FUNCTIONS[self.model](t, *self.params.values())

    def band(self, t: np.ndarray, low: float = 5, high: float = 95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap refits' curves at `t`."""
        if not self.boot_params:
            raise ValueError(f"{self.series}: no bootstrap refits ({self.status})")
        curves = np.stack([FUNCTIONS[self.model](t, *p) for p in self.boot_params])
        return np.percentile(curves, low, axis=0), np.percentile(curves, high, axis=0)

    def probability(self, op: str, threshold: float) -> float | None:
        """Share of bootstrap draws at the target epoch for which `draw op threshold` holds."""
        if not self.ok or not self.draws:
            return None
        return float(np.mean([_OPS[op](d, threshold) for d in self.draws]))


def _initial_guess(model: Model, t: np.ndarray, y: np.ndarray) -> tuple[list[float], tuple]:
    """Starting point and bounds for `curve_fit` from the data's own range."""
    span = max(float(t[-1] - t[0]), 1e-9)
    # On a flat curve some parameters are unidentifiable and drift towards infinity (a -> inf
    # with b -> 0; t0 -> -inf with k -> 0) until maxfev. Wide finite bounds stop the drift
    # without constraining any curve the data can actually show.
    if model == "exp_decay":
        c0 = max(float(y.min()) * 0.9, 0.0)
        a0 = float(y[0] - c0)
        a_max = 10.0 * (float(np.abs(y).max()) + 1.0)
        # Loss is non-negative, so the asymptote is too; the rate is per epoch.
        return [a0, 1.0 / span, c0], ([-a_max, 0.0, 0.0], [a_max, 50.0, a_max])
    u0 = min(max(float(y.max()) * 1.05, 1e-3), 1.0)
    mid = float(t[np.argmin(np.abs(y - u0 / 2))])
    # Accuracies live in [0, 1]: the ceiling cannot exceed 1.
    t0_lo, t0_hi = float(t[0]) - 10.0 * span, float(t[-1]) + 10.0 * span
    mid = min(max(mid, t0_lo), t0_hi)
    return [u0, 4.0 / span, mid], ([0.0, 0.0, t0_lo], [1.0, 50.0, t0_hi])


def _fit(model: Model, t: np.ndarray, y: np.ndarray, p0: list[float], bounds: tuple) -> np.ndarray:
    from scipy.optimize import curve_fit

    with warnings.catch_warnings():
        # Unidentifiable covariance (e.g. a flat curve) is expected here: we only use the
        # point estimate, and the bootstrap measures the uncertainty instead.
        warnings.simplefilter("ignore")
        popt, _ = curve_fit(FUNCTIONS[model], t, y, p0=p0, bounds=bounds, maxfev=20000)
    if not np.all(np.isfinite(popt)):
        raise RuntimeError("non-finite parameters")
    return popt


def project(series: str, model: Model, epochs: list[float], values: list[float], target_epoch: float,
            samples: int, seed: int = 0) -> Projection:
    """Fit `values` over `epochs` with `model` and project to `target_epoch` (see module doc)."""
    t = np.asarray(epochs, dtype=float)
    y = np.asarray(values, dtype=float)
    n = len(t)
    base = {"series": series, "model": model, "target_epoch": float(target_epoch), "n_points": n}
    if n < MIN_POINTS:
        return Projection(**base, status="too_few_points",
                          message=f"{n} epoch(s) logged; a fit needs at least {MIN_POINTS}")
    p0, bounds = _initial_guess(model, t, y)
    try:
        popt = _fit(model, t, y, p0, bounds)
    except (RuntimeError, ValueError) as err:
        return Projection(**base, status="fit_failed", message=f"curve_fit did not converge: {err}")

    fitted = FUNCTIONS[model](t, *popt)
    residuals = y - fitted
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residuals**2)) / ss_tot if ss_tot > 0 else None
    resid_std = float(np.std(residuals, ddof=len(popt))) if n > len(popt) else None
    params = dict(zip(PARAM_NAMES[model], (float(p) for p in popt), strict=True))
    projected = float(FUNCTIONS[model](np.array([target_epoch], dtype=float), *popt)[0])

    lo_bound, hi_bound = RANGES[model]
    rng = np.random.default_rng(seed)
    draws: list[float] = []
    boot_params: list[tuple[float, ...]] = []
    failed = 0
    for _ in range(samples):
        y_star = fitted + rng.choice(residuals, size=n, replace=True)
        try:
            p_star = _fit(model, t, y_star, list(popt), bounds)
        except (RuntimeError, ValueError):
            failed += 1
            continue
        at_target = float(FUNCTIONS[model](np.array([target_epoch], dtype=float), *p_star)[0])
        draws.append(min(max(at_target + float(rng.choice(residuals)), lo_bound), hi_bound))
        boot_params.append(tuple(float(p) for p in p_star))
    proj = Projection(**base, status="ok", message="fit converged", params=params, r2=r2,
                      residual_std=resid_std, projected=projected, failed_refits=failed)
    if failed > MAX_FAILED_REFIT_SHARE * samples:
        proj.status = "unstable"
        proj.message = f"{failed}/{samples} bootstrap refits failed: the fit is not stable"
        return proj
    lo, hi = np.percentile(draws, [5, 95])
    proj.interval = (float(lo), float(hi))
    proj.draws = draws
    proj.boot_params = boot_params
    if failed:
        proj.message = f"fit converged; {failed}/{samples} bootstrap refits failed and were left out"
    z = runs_z(residuals)
    if z is not None and z < MIN_RUNS_Z:
        proj.status = "poor_fit"
        proj.message = (f"residuals change sign far less often than chance (runs test z = {z:.1f} "
                        f"< {MIN_RUNS_Z:g}): the curve misses the history systematically")
    elif r2 is None or r2 < MIN_R2:
        proj.status = "poor_fit"
        shown = "undefined (a constant history)" if r2 is None else f"{r2:.2f}"
        proj.message = (f"R^2 = {shown} < {MIN_R2:g}: the curve explains too little of the history "
                        "to project it")
    return proj


def runs_z(residuals: np.ndarray) -> float | None:
    """Wald-Wolfowitz runs test z-score of the residual signs (None when undefined)."""
    signs = np.sign(residuals[residuals != 0])
    n_pos, n_neg = int(np.sum(signs > 0)), int(np.sum(signs < 0))
    n = n_pos + n_neg
    if n_pos == 0 or n_neg == 0 or n < 3:
        return None
    runs = 1 + int(np.sum(signs[1:] != signs[:-1]))
    mean = 2.0 * n_pos * n_neg / n + 1.0
    var = 2.0 * n_pos * n_neg * (2.0 * n_pos * n_neg - n) / (n * n * (n - 1.0))
    return float((runs - mean) / math.sqrt(var)) if var > 0 else None


# Which training-history column projects which evaluation metric, with which curve: only
# columns measuring the same quantity as the metric.
PROJECTED_METRICS: dict[str, tuple[str, Model]] = {
    "loss": ("lm_loss", "exp_decay"),  # the `loss` metric is the LM loss, not lm + q
    "code_tiered_accuracy": ("code_tiered_accuracy", "logistic"),
}

NOT_PROJECTED: dict[str, str] = {
    "token_accuracy_all": "no curve of it: the per-epoch token_accuracy scores each position's "
                          "likeliest output; the metric scores the greedy fix",
}
"""Metrics with a similar-looking history column that measures something else, and why it does
not project them."""


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
