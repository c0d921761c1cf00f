"""The convergence report: `report.md` and its PNGs under `plots/`, computed from the inputs.

Sections: verdict; current vs target per criterion (value, target, gap, progress, projection
and probability of meeting it by `gate.target_epoch`); learning curves by phase; trajectory
projections (fit, interval, or why there is none); early warnings and the recommendations
they trigger; and, when the registry was used, what it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hrm.config import GateConfig
from hrm.gate.decide import CriterionResult, GateResult
from hrm.gate.inputs import History
from hrm.gate.plots import learning_curves, projection_plot
from hrm.gate.projection import PROJECTED_METRICS, Projection, project
from hrm.gate.rules import RuleResult, evaluate_rules

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


@dataclass
class ConvergenceReport:
    """Everything the report shows, computed before anything is rendered."""

    gate: GateConfig
    result: GateResult
    history: History
    projections: dict[str, Projection]
    rules: list[RuleResult]
    registry_lines: list[str] = field(default_factory=list)

    def probability(self, c: CriterionResult) -> float | None:
        proj = self.projections.get(c.metric)
        return proj.probability(c.op, c.threshold) if proj is not None else None


def build_report(gate: GateConfig, result: GateResult, history: History, seed: int = 0) -> ConvergenceReport:
    """Fit every projectable curve the history logs, and evaluate the warning rules."""
    projections: dict[str, Projection] = {}
    for metric, (column, model) in PROJECTED_METRICS.items():
        if column not in history.columns:
            continue
        epochs, values = history.series(column)
        projections[metric] = project(column, model, epochs, values, gate.target_epoch,
                                      gate.bootstrap_samples, seed=seed)
    return ConvergenceReport(gate=gate, result=result, history=history, projections=projections,
                             rules=evaluate_rules(gate, history, result.metrics))


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def _progress(c: CriterionResult) -> str:
    """A 10-cell bar of how far the value is towards the threshold, or why there is none."""
    if c.passed:
        return "✅ met"
    if c.value is None or c.status != "fail":
        return f"⚠️ {c.status.replace('_', '-')}"
    v, t = c.value, c.threshold
    if c.op in (">", ">="):
        share = v / t if t > 0 else 0.0
    else:
        share = t / v if v > 0 else 0.0
    share = min(max(share, 0.0), 1.0)
    cells = int(round(share * 10))
    return f"❌ {'▓' * cells}{'░' * (10 - cells)} {share:.0%}"


def _criteria_table(rep: ConvergenceReport) -> list[str]:
    t = rep.gate.target_epoch
    lines = [
        f"| criterion | value | target | gap | progress | projected @ epoch {t} (90% interval) | P(met by epoch {t}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in rep.result.criteria:
        proj = rep.projections.get(c.metric)
        if proj is None:
            projected, prob = "not projected (no learning curve logged)", "—"
        elif not proj.ok:
            projected, prob = f"{proj.status.replace('_', ' ')}", "—"
        else:
            lo, hi = proj.interval
            projected = f"{proj.projected:.4g} ({lo:.4g} – {hi:.4g})"
            prob = f"{rep.probability(c):.0%}"
        value = _fmt(c.value) if c.status in ("pass", "fail", "non_finite") else c.status
        lines.append(f"| `{c.key}` | {value} | {c.op} {c.threshold:g} | {_fmt(c.gap)} | {_progress(c)} "
                     f"| {projected} | {prob} |")
    return lines


def _projection_section(rep: ConvergenceReport, plots: dict[str, str]) -> list[str]:
    lines = ["## Trajectory projection", ""]
    if not rep.projections:
        return lines + ["No projectable curve (loss, token accuracy, tiered accuracy) in the training log.", ""]
    lines += [
        "Curves are the per-epoch means of the training log (`history.csv`, train split), fitted with "
        "`a·exp(-b·t)+c` (loss) or `u/(1+exp(-k·(t-t0)))` (accuracies) by `scipy.optimize.curve_fit` and "
        f"projected to epoch {rep.gate.target_epoch}. Intervals and probabilities come from "
        f"{rep.gate.bootstrap_samples} residual-bootstrap refits, each plus one resampled residual. "
        "Criteria on val are judged from the training curve: a proxy, optimistic when val lags train.",
        "",
        "| series | curve | points | status | parameters | R² | projected | 90% interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for proj in rep.projections.values():
        params = ", ".join(f"{k}={v:.4g}" for k, v in proj.params.items()) or "—"
        interval = f"{proj.interval[0]:.4g} – {proj.interval[1]:.4g}" if proj.interval else "—"
        status = proj.status if proj.ok else f"**{proj.status}**: {proj.message}"
        lines.append(f"| `{proj.series}` | {proj.model} | {proj.n_points} | {status} | {params} | "
                     f"{'—' if proj.r2 is None else f'{proj.r2:.4f}'} | {_fmt(proj.projected)} | {interval} |")
    lines.append("")
    for metric, rel in plots.items():
        lines += [f"![projection of {metric}]({rel})", ""]
    return lines


def _rules_section(rep: ConvergenceReport) -> list[str]:
    lines = ["## Early warnings", "", "| rule | status | evidence |", "|---|---|---|"]
    for r in rep.rules:
        mark = {"triggered": "⚠️ triggered", "clear": "✅ clear", "not_evaluated": "not evaluated"}[r.status]
        lines.append(f"| {r.rule} | {mark} | {r.evidence} |")
    lines += ["", "## Recommendations", ""]
    triggered = [r for r in rep.rules if r.triggered]
    if not triggered:
        lines.append("No warning triggered, so no recommendation.")
    for r in triggered:
        lines.append(f"- **{r.rule}** — {r.recommendation} _Triggered by: {r.evidence}._")
    return lines + [""]


def render_markdown(rep: ConvergenceReport, plots: dict[str, str]) -> str:
    """The report as Markdown; `plots` maps a figure key to its path relative to the report."""
    res = rep.result
    counts = res.counts()
    last = rep.history.last_epoch
    lines = [
        "# Convergence gate report",
        "",
        f"**Verdict: {res.verdict}** — {counts['passed']}/{counts['total']} criteria met. "
        f"Training reached epoch {_fmt(last)} of the planned {rep.gate.target_epoch} "
        f"(phases: {', '.join(rep.history.phases)}).",
        "",
    ]
    if res.failing:
        lines += ["Failing criteria:", ""]
        lines += [f"- `{c.key}` {c.op} {c.threshold:g}: {c.note}" for c in res.failing]
        lines.append("")
    lines += ["## Current vs target", ""] + _criteria_table(rep) + [""]
    if "learning_curves" in plots:
        lines += ["## Learning curves", "", f"![learning curves]({plots['learning_curves']})", ""]
    lines += _projection_section(rep, {k: v for k, v in plots.items() if k != "learning_curves"})
    lines += _rules_section(rep)
    if rep.registry_lines:
        lines += ["## Registry", ""] + [f"- {x}" for x in rep.registry_lines] + [""]
    return "\n".join(lines)


def write_report(rep: ConvergenceReport, out_dir: str | Path) -> list[Path]:
    """Draw the plots and write `report.md`; returns every file written (report last)."""
    out = Path(out_dir)
    plot_dir = out / PLOTS_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rel: dict[str, str] = {}
    if rep.history.points:
        written.append(learning_curves(rep.history, plot_dir / "learning_curves.png"))
        rel["learning_curves"] = f"{PLOTS_DIR}/learning_curves.png"
    criteria = {c.metric: c for c in rep.result.criteria}
    for metric, proj in rep.projections.items():
        c = criteria.get(metric)
        name = f"projection_{metric}.png"
        written.append(projection_plot(proj, rep.history, c.threshold if c else None, c.op if c else None,
                                       proj.series, plot_dir / name))
        rel[metric] = f"{PLOTS_DIR}/{name}"
    report = out / REPORT_FILE
    report.write_text(render_markdown(rep, rel) + "\n", encoding="utf-8")
    written.append(report)
    return written
