"""The report's figures (matplotlib, Agg backend: no display, files only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrm.gate.inputs import History
from hrm.gate.projection import Projection

# History columns drawn as learning curves, with their axis labels; absent columns are skipped.
CURVES = (
    ("lm_loss", "LM loss"),
    ("token_accuracy", "token accuracy (per position)"),
    ("code_tiered_accuracy", "tiered accuracy"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mark_phases(ax, history: History) -> None:
    """Dashed line at the first epoch of each phase after the first, labelled with its name."""
    starts = history.phase_starts()
    for i, (phase, epoch) in enumerate(starts):
        boundary = epoch if i == 0 else (epoch + _last_epoch_of(history, starts[i - 1][0])) / 2
        if i > 0:
            ax.axvline(boundary, color="0.5", linestyle="--", linewidth=1)
        # Staggered heights: short phases put their boundaries close together.
        ax.annotate(phase, xy=(boundary, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12 - 11 * (i % 3)), textcoords="offset points", fontsize=8, color="0.3")


def _last_epoch_of(history: History, phase: str) -> float:
    return max(p.epoch for p in history.points if p.phase == phase)


VAL_CURVES = {"lm_loss": "val_lm_loss", "token_accuracy": "val_token_accuracy"}
"""The per-epoch val column drawn beside each train curve (when training logged it)."""


def panel_columns(history: History) -> list[tuple[str, str | None]]:
    """(train column, val column or None) of each panel `learning_curves` draws."""
    return [(c, VAL_CURVES[c] if c in VAL_CURVES and history.series(VAL_CURVES[c])[0] else None)
            for c, _ in CURVES if history.series(c)[0]]


def learning_curves(history: History, path: Path) -> Path:
    """One panel per logged curve, each phase in its own colour, phase boundaries dashed; the
    val curve (black, dashed) beside the train one where training evaluated val per epoch."""
    plt = _pyplot()
    labels = dict(CURVES)
    columns = panel_columns(history)
    panels = [(c, labels[c]) for c, _ in columns]
    if not panels:
        raise ValueError("no learning curve to draw: the history has no finite loss or accuracy")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.8 * len(panels)), sharex=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (column, label) in zip(axes[:, 0], panels, strict=True):
        for i, phase in enumerate(history.phases):
            pts = [(p.epoch, p.values[column]) for p in history.points
                   if p.phase == phase and column in p.values and np.isfinite(p.values[column])]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, color=colours(i), label=phase)
        val = dict(columns)[column]
        if val is not None:
            xs, ys = history.series(val)
            ax.plot(xs, ys, linestyle="--", marker="s", markersize=3, color="black", label="val")
        _mark_phases(ax, history)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("Learning curves by training phase (train: per-epoch means of the training log)")
    axes[0, 0].legend(loc="center right", fontsize=8)
    axes[-1, 0].set_xlabel("epoch (global)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def projection_plot(proj: Projection, history: History, threshold: float | None, op: str | None,
                    label: str, path: Path) -> Path:
    """Observed points, the fitted curve to the target epoch, the bootstrap band and the target."""
    plt = _pyplot()
    column = proj.series
    xs, ys = history.series(column)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(xs, ys, "o", markersize=4, color="tab:blue", label=f"observed ({len(xs)} epochs)")
    last = xs[-1] if xs else 0.0
    t = np.linspace(min(xs) if xs else 0.0, max(proj.target_epoch, last), 200)
    if proj.params:
        ax.plot(t, proj.curve(t), color="tab:orange", label=f"{proj.model} fit")
    if proj.boot_params:
        lo, hi = proj.band(t)
        ax.fill_between(t, lo, hi, color="tab:orange", alpha=0.2, label="bootstrap 90% band (curve)")
    if proj.interval is not None and proj.projected is not None:
        ax.errorbar([proj.target_epoch], [proj.projected],
                    yerr=[[proj.projected - proj.interval[0]], [proj.interval[1] - proj.projected]],
                    fmt="s", color="tab:red", capsize=4, label="projection, 90% interval")
    if threshold is not None:
        ax.axhline(threshold, color="tab:green", linestyle=":", label=f"target {op} {threshold:g}")
    ax.axvline(proj.target_epoch, color="tab:red", linestyle="--", linewidth=1, alpha=0.6)
    ax.annotate(f"target epoch {proj.target_epoch:g}", xy=(proj.target_epoch, 0.0),
                xycoords=("data", "axes fraction"), xytext=(-3, 4), textcoords="offset points",
                ha="right", fontsize=8, color="tab:red")
    _mark_phases(ax, history)
    status = "" if proj.ok else f" — {proj.status.replace('_', ' ')}: {proj.message}"
    ax.set_title(f"Projection of {label} to epoch {proj.target_epoch:g}{status}", fontsize=9)
    ax.set_xlabel("epoch (global)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
