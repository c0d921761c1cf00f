"""Early-warning rules on the training history and evaluation metrics, and their recommendations.

Each rule has explicit thresholds in `gate` params and returns a `RuleResult` that is
`triggered`, `clear`, or `not_evaluated` (with the reason: too early, a metric missing). A
triggered rule carries the evidence that triggered it and the recommendation that follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hrm.config import GateConfig
from hrm.gate.inputs import History
from hrm.gate.projection import is_finite

RuleStatus = Literal["triggered", "clear", "not_evaluated"]


@dataclass(frozen=True)
class RuleResult:
    rule: str
    status: RuleStatus
    evidence: str
    recommendation: str | None = None

    @property
    def triggered(self) -> bool:
        return self.status == "triggered"


RECOMMENDATIONS = {
    "plateau": "Adjust the LR schedule (longer warm-up, a restart or a lower peak LR for the next phase) "
               "or add a curriculum phase (easy_to_hard / hardest) to move the loss again.",
    "overfitting": "Add data (more SWE-smith instances or `hrm data synth`) or raise train.weight_decay.",
    "tiered_stagnating": "Give the low-level module more computation: raise L_cycles (model.L_cycles or "
                         "the phase's L_cycles override).",
    "search_not_converging": "Widen the search: raise eval.search.candidates_per_iteration or "
                             "eval.search.max_iterations.",
}


def plateau_series(history: History) -> tuple[str, list[float], list[float]]:
    """The loss the plateau rule watches: the val loss when training logged it (the same rows
    every epoch), else the training loss of the last phase only (each phase trains on other
    rows, so a loss from an earlier phase is not comparable)."""
    epochs, loss = history.series("val_lm_loss")
    if epochs:
        return "val loss", epochs, loss
    last = history.points[-1].phase if history.points else None
    points = [(p.epoch, p.values["lm_loss"]) for p in history.points
              if p.phase == last and is_finite(p.values.get("lm_loss"))]
    return f"{last} training loss", [e for e, _ in points], [v for _, v in points]


def plateau_rule(gate: GateConfig, history: History) -> RuleResult:
    """Loss reduction over the last `plateau_window` epochs below `plateau_min_reduction`."""
    name = "plateau"
    series, epochs, loss = plateau_series(history)
    if not epochs:
        return RuleResult(name, "not_evaluated", "no finite loss in the training history")
    last = epochs[-1]
    if last < gate.plateau_min_epoch:
        return RuleResult(name, "not_evaluated",
                          f"last epoch {last:g} is before plateau_min_epoch={gate.plateau_min_epoch}")
    # The loss `plateau_window` epochs ago: the latest point at or before last - window.
    earlier = [(e, v) for e, v in zip(epochs, loss, strict=True) if e <= last - gate.plateau_window]
    if not earlier:
        return RuleResult(name, "not_evaluated",
                          f"no {series} logged at or before epoch {last - gate.plateau_window:g} "
                          f"(window {gate.plateau_window})")
    e0, l0 = earlier[-1]
    l1 = loss[-1]
    if l0 <= 0:
        return RuleResult(name, "not_evaluated", f"{series} at epoch {e0:g} is {l0:g}; relative reduction undefined")
    reduction = (l0 - l1) / l0
    evidence = (f"{series} {l0:.4g} at epoch {e0:g} -> {l1:.4g} at epoch {last:g}: relative reduction "
                f"{reduction:.1%} over {last - e0:g} epochs (threshold {gate.plateau_min_reduction:.0%})")
    if reduction < gate.plateau_min_reduction:
        return RuleResult(name, "triggered", evidence, RECOMMENDATIONS[name])
    return RuleResult(name, "clear", evidence)


def overfitting_rule(gate: GateConfig, metrics: dict[str, dict[str, float | None]],
                     history: History | None = None) -> RuleResult:
    """Train minus val token accuracy above `overfit_gap`: from `hrm evaluate` when a train split
    was evaluated, else from the training log's last epoch that has both (the training batches'
    token accuracy against the per-epoch val pass's, the same per-position measure)."""
    name = "overfitting"
    train = metrics.get("train", {}).get("token_accuracy_all")
    val = metrics.get("val", {}).get("token_accuracy_all")
    source = "token_accuracy_all"
    if not is_finite(train) and history is not None:
        both = [p for p in history.points
                if is_finite(p.values.get("token_accuracy")) and is_finite(p.values.get("val_token_accuracy"))]
        if both:
            train, val = both[-1].values["token_accuracy"], both[-1].values["val_token_accuracy"]
            source = f"training log, epoch {both[-1].epoch:g}: token_accuracy"
    if not (is_finite(train) and is_finite(val)):
        return RuleResult(name, "not_evaluated",
                          f"token_accuracy_all needs finite train and val values (train={train}, val={val}; "
                          "no epoch of the training log has both token_accuracy and val_token_accuracy)")
    gap = train - val
    evidence = f"{source} train {train:.4g} - val {val:.4g} = {gap:.4g} (threshold {gate.overfit_gap:g})"
    if gap > gate.overfit_gap:
        return RuleResult(name, "triggered", evidence, RECOMMENDATIONS[name])
    return RuleResult(name, "clear", evidence)


def tiered_rule(gate: GateConfig, history: History, metrics: dict[str, dict[str, float | None]]) -> RuleResult:
    """Val tiered accuracy under `tiered_min` once `tiered_check_share` of the plan has passed."""
    name = "tiered_stagnating"
    check_epoch = gate.tiered_check_share * gate.target_epoch
    last = history.last_epoch
    if last is None or last < check_epoch:
        return RuleResult(name, "not_evaluated",
                          f"last epoch {last} is before {gate.tiered_check_share:.0%} of the plan "
                          f"(epoch {check_epoch:g} of {gate.target_epoch})")
    value = metrics.get("val", {}).get("code_tiered_accuracy")
    if not is_finite(value):
        return RuleResult(name, "not_evaluated", f"val code_tiered_accuracy is {value}")
    evidence = (f"val code_tiered_accuracy {value:.4g} at epoch {last:g} (>= epoch {check_epoch:g}); "
                f"threshold {gate.tiered_min:g}")
    if value < gate.tiered_min:
        return RuleResult(name, "triggered", evidence, RECOMMENDATIONS[name])
    return RuleResult(name, "clear", evidence)


def search_rule(gate: GateConfig, metrics: dict[str, dict[str, float | None]]) -> RuleResult:
    """Val SWE-search convergence rate below `search_min_convergence`."""
    name = "search_not_converging"
    value = metrics.get("val", {}).get("swe_search_convergence_rate")
    if not is_finite(value):
        return RuleResult(name, "not_evaluated", f"val swe_search_convergence_rate is {value}")
    evidence = f"val swe_search_convergence_rate {value:.4g} (threshold {gate.search_min_convergence:g})"
    if value < gate.search_min_convergence:
        return RuleResult(name, "triggered", evidence, RECOMMENDATIONS[name])
    return RuleResult(name, "clear", evidence)


def evaluate_rules(gate: GateConfig, history: History,
                   metrics: dict[str, dict[str, float | None]]) -> list[RuleResult]:
    """All early-warning rules, in report order."""
    return [
        plateau_rule(gate, history),
        overfitting_rule(gate, metrics, history),
        tiered_rule(gate, history, metrics),
        search_rule(gate, metrics),
    ]
