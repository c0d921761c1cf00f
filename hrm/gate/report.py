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
from hrm.gate.html import write_html
from hrm.gate.inputs import History
from hrm.gate.plots import learning_curves, projection_plot
from hrm.gate.projection import MIN_POINTS, NOT_PROJECTED, PROJECTED_METRICS, Projection, project
from hrm.gate.rules import RuleResult, evaluate_rules

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


@dataclass
class ConvergenceReport:
    """Everything the report shows, computed before anything is rendered.

    `projections` is keyed by criterion key (`split/metric`). A criterion on a split whose own
    curve was not logged is projected from the train curve (`proxies` names those); when the
    overfitting rule fires, train is no proxy for that split and no probability is given.
    """

    gate: GateConfig
    result: GateResult
    history: History
    projections: dict[str, Projection]
    rules: list[RuleResult]
    proxies: set[str] = field(default_factory=set)
    registry_lines: list[str] = field(default_factory=list)

    @property
    def proxy_withheld(self) -> bool:
        """True when the train curve must not stand in for another split (overfitting)."""
        return any(r.rule == "overfitting" and r.triggered for r in self.rules)

    def probability(self, c: CriterionResult) -> float | None:
        proj = self.projections.get(c.key)
        if proj is None or (c.key in self.proxies and self.proxy_withheld):
            return None
        return proj.probability(c.op, c.threshold)


def history_column(history: History, split: str, column: str) -> tuple[str, bool]:
    """The history column that tracks `column` on `split`, and whether it is a train proxy.

    Training logs `val_<column>` per epoch when it evaluates val; a split without its own
    curve (or with too few points to fit) falls back to the train curve.
    """
    if split != "train":
        own = f"{split}_{column}"
        if own in history.columns and len(history.series(own)[0]) >= MIN_POINTS:
            return own, False
        return column, True
    return column, False


def build_report(gate: GateConfig, result: GateResult, history: History, seed: int = 0) -> ConvergenceReport:
    """Fit the curve behind every projectable criterion, and evaluate the warning rules."""
    projections: dict[str, Projection] = {}
    proxies: set[str] = set()
    for c in result.criteria:
        if c.metric not in PROJECTED_METRICS:
            continue
        base, model = PROJECTED_METRICS[c.metric]
        column, proxy = history_column(history, c.split, base)
        if column not in history.columns:
            continue
        epochs, values = history.series(column)
        projections[c.key] = project(column, model, epochs, values, gate.target_epoch,
                                     gate.bootstrap_samples, seed=seed)
        if proxy:
            proxies.add(c.key)
    return ConvergenceReport(gate=gate, result=result, history=history, projections=projections,
                             rules=evaluate_rules(gate, history, result.metrics), proxies=proxies)


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
        f"| criterion | value | copy | unigram | untrained | target | gap | progress | projected @ epoch {t} (90% interval) "
        f"| P(met by epoch {t}) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rep.result.criteria:
        proj = rep.projections.get(c.key)
        if proj is None:
            projected = f"not projected ({NOT_PROJECTED.get(c.metric, 'no learning curve logged')})"
            prob = "—"
        elif not proj.ok:
            projected, prob = f"{proj.status.replace('_', ' ')}", "—"
        else:
            lo, hi = proj.interval
            projected = f"{proj.projected:.4g} ({lo:.4g} – {hi:.4g})"
            p = rep.probability(c)
            prob = f"{p:.0%}" if p is not None else "withheld: train curve, overfitting"
            if c.key in rep.proxies:
                projected += " from the train curve"
        value = _fmt(c.value) if c.status in ("pass", "fail", "non_finite") else c.status.replace("_", " ")
        copy = _fmt(c.baseline_copy) + ("" if c.informative else " (meets it)")
        lines.append(f"| `{c.key}` | {value} | {copy} | {_fmt(c.baseline_unigram)} | {_fmt(c.baseline_untrained)} | {c.op} {c.threshold:g} "
                     f"| {_fmt(c.gap)} | {_progress(c)} | {projected} | {prob} |")
    return lines


def _projection_section(rep: ConvergenceReport, plots: dict[str, str]) -> list[str]:
    lines = ["## Trajectory projection", ""]
    if not rep.projections:
        return lines + ["No projectable curve (loss, token accuracy, tiered accuracy) in the training log.", ""]
    lines += [
        "Curves are the per-epoch means of the training log (`history.csv`): `val_*` columns are the "
        "val split evaluated after each epoch, the others the training batches. Each is fitted with "
        "`a·exp(-b·t)+c` (loss) or `u/(1+exp(-k·(t-t0)))` (accuracies) by `scipy.optimize.curve_fit` and "
        f"projected to epoch {rep.gate.target_epoch}. Intervals and probabilities come from "
        f"{rep.gate.bootstrap_samples} residual-bootstrap refits, each plus one resampled residual, "
        "clipped to the metric's range. A criterion whose split has no curve of its own is projected "
        "from the train curve; its probability is withheld when the overfitting rule fires.",
        "",
        "| criterion | series | curve | points | status | parameters | R² | projected | 90% interval |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, proj in rep.projections.items():
        params = ", ".join(f"{k}={v:.4g}" for k, v in proj.params.items()) or "—"
        interval = f"{proj.interval[0]:.4g} – {proj.interval[1]:.4g}" if proj.interval else "—"
        status = proj.status if proj.ok else f"**{proj.status}**: {proj.message}"
        if key in rep.proxies:
            status += " (train curve as proxy)"
        lines.append(f"| `{key}` | `{proj.series}` | {proj.model} | {proj.n_points} | {status} | {params} | "
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


def _ablation_section(res: GateResult) -> list[str]:
    """The paired reverse-learning ablation of each split whose criterion names it."""
    lines = []
    for c in res.criteria:
        if c.metric != "reverse_learning_integration":
            continue
        m = res.metrics.get(c.split, {})
        lines += [f"## Reverse-learning ablation (`{c.split}`)", ""]
        if c.value is None:
            lines += [f"{c.note}.", ""]
            continue
        lower, higher = (("—" if v is None else f"{v:.0f}") for v in
                         (m.get("reverse_learning_rows_lower"), m.get("reverse_learning_rows_higher")))
        lines += ["A control model was trained with the L->H feedback path off on the same data, seed "
                  "and epochs. Per row, the model with the path has the lower loss on "
                  f"{lower} rows and the higher on {higher} (ties count half): "
                  f"**{_fmt(c.value)}** (0.5 = no effect), two-sided sign test **p = "
                  f"{_fmt(m.get('reverse_learning_p_value'), 3)}**. Loss: model {_fmt(m.get('loss'))}, "
                  f"control {_fmt(m.get('reverse_learning_control_loss'))}.", ""]
    return lines


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
        "Repair beyond copying and every other baseline"
        + (f" (primary metric `{res.primary.split}/{res.primary.metric}`)" if res.primary else "")
        + f": {res.evidence}.",
        "",
    ]
    if res.left_out:
        lines += ["Left out (another model's numbers): "
                  + "; ".join(res.left_out[s] for s in sorted(res.left_out)), ""]
    uninformative = [c for c in res.criteria if c.passed and not c.informative]
    if uninformative:
        lines += ["Met, but copying the buggy code meets them too (no evidence of repair): "
                  + ", ".join(f"`{c.key}`" for c in uninformative), ""]
    if res.failing or (res.primary is not None and not res.primary.passed):
        lines += ["Failing criteria:", ""]
        lines += [f"- `{c.key}` {c.op} {c.threshold:g}: {c.note}" for c in res.failing]
        if res.primary is not None and not res.primary.passed:
            lines.append(f"- primary `{res.primary.split}/{res.primary.metric}`: {res.primary.note}")
        lines.append("")
    lines += ["## Current vs target", ""] + _criteria_table(rep) + [""]
    lines += _ablation_section(res)
    if "learning_curves" in plots:
        lines += ["## Learning curves", "", f"![learning curves]({plots['learning_curves']})", ""]
    lines += _projection_section(rep, {k: v for k, v in plots.items() if k != "learning_curves"})
    lines += _rules_section(rep)
    if rep.registry_lines:
        lines += ["## Registry", ""] + [f"- {x}" for x in rep.registry_lines] + [""]
    return "\n".join(lines)


def write_report(rep: ConvergenceReport, out_dir: str | Path) -> list[Path]:
    """Draw the plots, write `report.md` and `report.html`; returns every file written (report.md last)."""
    out = Path(out_dir)
    plot_dir = out / PLOTS_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rel: dict[str, str] = {}
    if rep.history.points:
        written.append(learning_curves(rep.history, plot_dir / "learning_curves.png"))
        rel["learning_curves"] = f"{PLOTS_DIR}/learning_curves.png"
    criteria = {c.key: c for c in rep.result.criteria}
    for key, proj in rep.projections.items():
        c = criteria.get(key)
        name = f"projection_{key.replace('/', '_')}.png"
        written.append(projection_plot(proj, rep.history, c.threshold if c else None, c.op if c else None,
                                       proj.series, plot_dir / name))
        rel[key] = f"{PLOTS_DIR}/{name}"
    report = out / REPORT_FILE
    report.write_text(render_markdown(rep, rel) + "\n", encoding="utf-8")
    written.append(write_html(report))  # self-contained, for the Kubeflow UI and offline browsers
    written.append(report)
    return written
