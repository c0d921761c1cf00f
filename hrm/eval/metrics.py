"""Split-level metrics from per-row results. Definitions (also in docs/metrics.md):

- `token_accuracy_all`: micro accuracy of argmax predictions over every label token (end token
  included) of every row.
- `exact_accuracy`: share of rows whose label tokens are all predicted correctly.
- `edit_accuracy`: micro accuracy over the label tokens that are not copied from the buggy code
  under a difflib alignment (see `token_metrics.edit_positions`); null when no row has such a
  token. Copying the buggy code scores about 0 here.
- `code_syntax_validity`: share of checkable rows whose decoded hunks tokenize as Python and
  open/close the same brackets and strings as the reference (`fragments.syntax_valid`).
- `code_compilation_success`: share of rows whose prediction compiles in the reference's context
  (spliced into the buggy file when an environment provides it, else the reference's smallest
  wrapper); blank output fails; rows whose reference does not compile are excluded
  (`code_rows_excluded`).
- `code_ast_match`: share of the same rows whose normalised AST equals the reference's.
- `resolved_rate`: resolved rows / all rows; a row without an environment counts as not
  resolved and is counted in `resolved_rows_without_env`; null when no row has one or tests
  are disabled.
- `code_tiered_accuracy`: mean over non-excluded rows of the summed `eval.tier_weights` of the
  nested tiers reached (syntax, compile, AST match, tests resolved).
- `loss`, `act_mean_steps`, `q_halt_accuracy`, `q_halt_balanced_accuracy`: model-only, from the
  inference pass (see `hrm.eval.model_pass`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hrm.eval.rows import RowResult


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def row_metrics(rows: Sequence[RowResult], *, tests_enabled: bool) -> dict[str, float | None]:
    """Token, code and execution metrics of one system (model or baseline) on a split."""
    if not rows:
        raise ValueError("no rows to score")
    tok_c = sum(r.tokens.token_correct for r in rows)
    tok_t = sum(r.tokens.token_total for r in rows)
    edit_c = sum(r.tokens.edit_correct for r in rows)
    edit_t = sum(r.tokens.edit_total for r in rows)
    syntax = [r.code.syntax for r in rows if r.code.syntax is not None]
    checked = [r for r in rows if not r.code.excluded]
    with_env = [r for r in rows if r.has_env]
    resolved: float | None = None
    if tests_enabled and with_env:
        resolved = sum(r.resolved is True for r in rows) / len(rows)
    tiered = [r.tier_score for r in rows if r.tier_score is not None]
    return {
        "rows": float(len(rows)),
        "token_accuracy_all": _ratio(tok_c, tok_t),
        "exact_accuracy": _share([r.tokens.exact for r in rows]),
        "edit_accuracy": _ratio(edit_c, edit_t),
        "code_syntax_validity": _share(syntax),
        "code_syntax_rows_excluded": float(len(rows) - len(syntax)),
        "code_compilation_success": _share([bool(r.code.compiles) for r in checked]),
        "code_ast_match": _share([bool(r.code.ast_match) for r in checked]),
        "code_rows_excluded": float(len(rows) - len(checked)),
        "code_rows_file_context": float(sum(r.code.context == "file" for r in rows)),
        "resolved_rate": resolved,
        "resolved_rows_without_env": float(len(rows) - len(with_env)),
        "code_tiered_accuracy": sum(tiered) / len(tiered) if tiered else None,
    }


def q_halt_metrics(q_halt: Sequence[float], exact: Sequence[bool]) -> dict[str, float | None]:
    """How well the Q head's halt signal (q_halt > 0) predicts that the row is exactly right.

    `q_halt_accuracy` is the HRM paper's plain accuracy; because an all-wrong split makes
    "never halt" score 1.0 there, `q_halt_balanced_accuracy` (mean of the per-class recalls)
    is reported too and is null when one class is absent.
    """
    pairs = list(zip([q > 0 for q in q_halt], exact, strict=True))
    if not pairs:
        return {"q_halt_accuracy": None, "q_halt_balanced_accuracy": None}
    acc = sum(p == e for p, e in pairs) / len(pairs)
    pos = [p for p, e in pairs if e]
    neg = [not p for p, e in pairs if not e]
    balanced = (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2 if pos and neg else None
    return {"q_halt_accuracy": acc, "q_halt_balanced_accuracy": balanced}
