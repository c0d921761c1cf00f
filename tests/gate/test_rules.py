"""Early-warning rules: triggered, clear, or not evaluated, with evidence and recommendations."""

from __future__ import annotations

import math

from hrm.config import GateConfig
from hrm.gate.inputs import load_history
from hrm.gate.rules import evaluate_rules, overfitting_rule, plateau_rule, search_rule, tiered_rule

GATE = GateConfig(target_epoch=20, plateau_min_epoch=10, plateau_window=5, plateau_min_reduction=0.1,
                  overfit_gap=0.15, tiered_min=0.1, tiered_check_share=0.5, search_min_convergence=0.3)


def _history(tmp_path, synth, epochs=15, **kw):
    synth.write_history(tmp_path, [("foundation", epochs)], **kw)
    return load_history(tmp_path, ["foundation"])


def test_plateau_triggers_on_flat_loss_and_not_on_falling_loss(tmp_path, synth):
    flat = _history(tmp_path / "flat", synth, loss_fn=lambda t: 1.0)
    r = plateau_rule(GATE, flat)
    assert r.triggered and "LR schedule" in r.recommendation and "epoch 10" in r.evidence
    falling = _history(tmp_path / "falling", synth, loss_fn=lambda t: 3.0 * math.exp(-0.1 * t))
    assert plateau_rule(GATE, falling).status == "clear"
    early = _history(tmp_path / "early", synth, epochs=8, loss_fn=lambda t: 1.0)
    r = plateau_rule(GATE, early)
    assert r.status == "not_evaluated" and "plateau_min_epoch" in r.evidence


def test_plateau_reads_the_val_loss_or_the_last_phase_never_a_loss_across_phases(tmp_path, synth):
    """Each phase trains on other rows: a training loss that jumps at a phase boundary is no
    plateau, and a val loss that keeps falling is none either."""
    def jumps(t):
        return 1.0 if t <= 8 else 3.0 * math.exp(-0.1 * (t - 8))  # higher in the second phase, falling
    synth.write_history(tmp_path / "two", [("foundation", 8), ("refinement", 10)], loss_fn=jumps)
    two = load_history(tmp_path / "two", ["foundation", "refinement"])
    r = plateau_rule(GATE, two)
    assert r.status == "clear" and r.evidence.startswith("refinement training loss"), r.evidence
    synth.write_history(tmp_path / "val", [("foundation", 8), ("refinement", 10)], loss_fn=lambda t: 1.0 + t,
                        val_loss_fn=lambda t: 2.0 * math.exp(-0.1 * t), val_acc_fn=lambda t: 0.5)
    r = plateau_rule(GATE, load_history(tmp_path / "val", ["foundation", "refinement"]))
    assert r.status == "clear" and r.evidence.startswith("val loss"), r.evidence
    synth.write_history(tmp_path / "flat", [("foundation", 8), ("refinement", 10)],
                        val_loss_fn=lambda t: 0.7, val_acc_fn=lambda t: 0.5)
    assert plateau_rule(GATE, load_history(tmp_path / "flat", ["foundation", "refinement"])).triggered


def test_overfitting_falls_back_to_the_training_log(tmp_path, synth):
    """Without an evaluated train split: the last epoch's training-batch token accuracy against
    its val pass's."""
    synth.write_history(tmp_path / "gap", [("foundation", 12)], acc_fn=lambda t: 0.95,
                        val_loss_fn=lambda t: 1.0, val_acc_fn=lambda t: 0.7)
    gap = load_history(tmp_path / "gap", ["foundation"])
    r = overfitting_rule(GATE, {"val": {"token_accuracy_all": 0.98}}, gap)
    assert r.triggered and "training log, epoch 12" in r.evidence, r.evidence
    synth.write_history(tmp_path / "close", [("foundation", 12)], acc_fn=lambda t: 0.75,
                        val_loss_fn=lambda t: 1.0, val_acc_fn=lambda t: 0.7)
    assert overfitting_rule(GATE, {}, load_history(tmp_path / "close", ["foundation"])).status == "clear"
    no_val = _history(tmp_path / "none", synth)
    assert overfitting_rule(GATE, {}, no_val).status == "not_evaluated"


def test_overfitting_uses_train_minus_val_token_accuracy():
    r = overfitting_rule(GATE, {"train": {"token_accuracy_all": 0.95}, "val": {"token_accuracy_all": 0.7}})
    assert r.triggered and "weight_decay" in r.recommendation and "0.25" in r.evidence
    assert overfitting_rule(GATE, {"train": {"token_accuracy_all": 0.8},
                                   "val": {"token_accuracy_all": 0.75}}).status == "clear"
    assert overfitting_rule(GATE, {"val": {"token_accuracy_all": 0.75}}).status == "not_evaluated"


def test_tiered_rule_applies_after_its_share_of_the_plan(tmp_path, synth):
    late = _history(tmp_path / "late", synth, epochs=12)
    low = {"val": {"code_tiered_accuracy": 0.05}}
    r = tiered_rule(GATE, late, low)
    assert r.triggered and "L_cycles" in r.recommendation
    assert tiered_rule(GATE, late, {"val": {"code_tiered_accuracy": 0.4}}).status == "clear"
    early = _history(tmp_path / "early", synth, epochs=8)
    assert tiered_rule(GATE, early, low).status == "not_evaluated"
    assert tiered_rule(GATE, late, {"val": {"code_tiered_accuracy": None}}).status == "not_evaluated"


def test_search_rule_and_full_rule_set(tmp_path, synth):
    r = search_rule(GATE, {"val": {"swe_search_convergence_rate": 0.1}})
    assert r.triggered and "candidates_per_iteration" in r.recommendation
    assert search_rule(GATE, {"val": {"swe_search_convergence_rate": float("nan")}}).status == "not_evaluated"
    rules = evaluate_rules(GATE, _history(tmp_path, synth), {"val": {}})
    assert [r.rule for r in rules] == ["plateau", "overfitting", "tiered_stagnating", "search_not_converging"]
