"""The metric names `hrm evaluate` writes; the gate validates its criteria against these.

Each name is defined (what it measures and how) in hrm/eval/metrics.py, model_pass.py, search.py and docs/metrics.md.
The bootstrap intervals (`exact_accuracy_ci95`, `resolved_rate_ci95`), `swe_search_verifier` and
the nested `baselines` / `breakdown` / `resolved_within` (the search's curve, {k: rate}) are
written beside them but are not numbers a criterion can name.
"""

from __future__ import annotations

METRIC_NAMES: tuple[str, ...] = (
    "loss",
    "token_accuracy_all",
    "exact_accuracy",
    "edit_accuracy",
    "code_syntax_validity",
    "code_compilation_success",
    "code_ast_match",
    "resolved_rate",
    "code_tiered_accuracy",
    "act_mean_steps",
    "q_halt_accuracy",
    "swe_search_score",
    "swe_search_candidates",
    "swe_search_iterations",
    "swe_search_convergence_rate",
    "swe_search_efficiency",
    "greedy_pass_rate",
    "reverse_learning_integration",
    "reverse_learning_p_value",
    "reverse_gate_off_share",
    "reverse_integration_gate",
    "reverse_planning_refinement",
    # counts and companions written alongside (definitions in docs/metrics.md)
    "rows",
    "code_syntax_rows_excluded",
    "code_rows_excluded",
    "code_rows_file_context",
    "resolved_rows_without_env",
    "q_halt_balanced_accuracy",
    "location_accuracy",
    "resolved_after_search",
    "exact_after_search",
    "fix_in_search_candidates",
    "swe_search_rows_static",
    "held_out_repo_exact_accuracy",
    "held_out_repo_rows",
    "abstained_rows",
    "reverse_learning_rows_lower",
    "reverse_learning_rows_higher",
    "reverse_learning_control_loss",
)

_RATES = ("token_accuracy_all", "exact_accuracy", "edit_accuracy", "code_syntax_validity",
          "code_compilation_success", "code_ast_match", "resolved_rate", "code_tiered_accuracy",
          "q_halt_accuracy", "swe_search_score", "swe_search_convergence_rate", "greedy_pass_rate",
          "reverse_learning_integration", "reverse_learning_p_value", "reverse_gate_off_share",
          "reverse_integration_gate", "q_halt_balanced_accuracy",
          "location_accuracy", "resolved_after_search", "exact_after_search", "fix_in_search_candidates",
          "held_out_repo_exact_accuracy")

METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    **{name: (0.0, 1.0) for name in _RATES},
    "swe_search_efficiency": (-1.0, 1.0),
    **{name: (0.0, None) for name in METRIC_NAMES if name not in _RATES
       and name != "swe_search_efficiency"},
}
"""[low, high] (None: unbounded) of every metric: rates and shares lie in [0, 1], the loss (a
negative log-likelihood), step counts, ratios and row counts are >= 0, the search's efficiency
(a difference of two rates over a count) in [-1, 1]. A finite value outside is impossible: the
gate refuses the file rather than judge it (`hrm.gate.inputs`)."""


def out_of_range(name: str, value: float) -> str:
    """Why a finite `value` is impossible for metric `name` ('' when it is possible)."""
    low, high = METRIC_RANGES.get(name, (None, None))
    if low is not None and value < low:
        return f"{name} = {value!r} is below its lowest possible value {low:g}"
    if high is not None and value > high:
        return f"{name} = {value!r} is above its highest possible value {high:g}"
    return ""
