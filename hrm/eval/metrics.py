"""Split-level metrics from per-row results. Definitions (also in docs/metrics.md):

- `exact_accuracy`: share of rows whose predicted regions equal the reference, text for text.
  `exact_accuracy_ci95`: its bootstrap 95% interval over rows, [low, high].
- `token_accuracy_all`: micro accuracy over every labelled position (anchors and code tokens) of
  every row: the position's output (its own token when kept) equals the reference's. Copying
  the buggy code scores the share of positions the fix leaves alone: high, and no evidence of
  repair.
- `edit_accuracy`: the same over the positions the reference changes only (copying: 0).
- `location_accuracy`: share of rows whose prediction changes exactly the reference's positions.
- `code_syntax_validity`, `code_compilation_success`, `code_ast_match`: shares of checkable rows
  whose prediction reaches each static tier in its context (the buggy file when an environment
  provides it, else the reference's smallest wrapper); an unchanged prediction fails them all.
- `resolved_rate`: rows resolved by their own tests / all rows (rows without an environment
  count as not resolved and are counted in `resolved_rows_without_env`); null when no row has
  one or tests are disabled. `resolved_rate_ci95`: bootstrap 95% interval.
- `code_tiered_accuracy`: mean over checkable rows of the summed `eval.tier_weights` of the
  nested tiers reached (syntax, compile, AST match, tests resolved).
- `loss`, `act_mean_steps`, `q_halt_accuracy`, `q_halt_balanced_accuracy`: model-only.

`breakdown` (nested, not flat: the report's tables) splits exact/resolved and the token
accuracy (beside copying's, over the group's `positions`) by bug kind, by repo, and into
`inferable` / `non_inferable` kinds (`hrm.synth.mutations.NON_INFERABLE`: the fix re-adds code
the buggy function no longer shows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hrm.eval.rows import RowResult
from hrm.synth.mutations import NON_INFERABLE


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def bootstrap_ci(flags: Sequence[bool], *, samples: int = 2000, seed: int = 0) -> list[float] | None:
    """95% percentile bootstrap interval of a share over rows, [low, high] (None: no rows)."""
    if not flags:
        return None
    values = np.asarray(flags, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def inferable(kind: str) -> bool:
    return kind.removeprefix("func_pm_") not in NON_INFERABLE


def row_metrics(rows: Sequence[RowResult], *, tests_enabled: bool, ci: bool = True
                ) -> dict[str, float | list | None]:
    """Position, code and execution metrics of one system (model or baseline) on a split."""
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
    resolved_flags = [r.resolved is True for r in rows]
    if tests_enabled and with_env:
        resolved = sum(resolved_flags) / len(rows)
    tiered = [r.tier_score for r in rows if r.tier_score is not None]
    exact = [r.exact for r in rows]
    out: dict[str, float | list | None] = {
        "rows": float(len(rows)),
        "token_accuracy_all": _ratio(tok_c, tok_t),
        "exact_accuracy": _share(exact),
        "edit_accuracy": _ratio(edit_c, edit_t),
        "location_accuracy": _share([r.tokens.located for r in rows]),
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
    if ci:
        out["exact_accuracy_ci95"] = bootstrap_ci(exact)
        out["resolved_rate_ci95"] = bootstrap_ci(resolved_flags) if resolved is not None else None
    return out


def breakdown(rows: Sequence[RowResult], searched: Sequence[bool] | None = None,
              held_out_repos: Sequence[str] = ()) -> dict[str, dict[str, dict[str, float]]]:
    """Exact / resolved (and resolved after search) and token accuracy beside copying's, per
    kind, per repo, inferable or not."""
    groups: dict[str, dict[str, list[int]]] = {"kind": {}, "repo": {}, "inferable": {}}
    for i, r in enumerate(rows):
        groups["kind"].setdefault(r.kind, []).append(i)
        repo = r.repo + (" (held out)" if r.repo in held_out_repos else "")
        groups["repo"].setdefault(repo, []).append(i)
        groups["inferable"].setdefault("inferable" if inferable(r.kind) else "non_inferable",
                                       []).append(i)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for axis, members in groups.items():
        out[axis] = {}
        for name, idx in sorted(members.items()):
            positions = sum(rows[i].tokens.token_total for i in idx)
            changed = sum(rows[i].tokens.edit_total for i in idx)
            entry = {"rows": float(len(idx)),
                     "exact_accuracy": sum(rows[i].exact for i in idx) / len(idx),
                     "resolved": float(sum(rows[i].resolved is True for i in idx)),
                     "positions": float(positions),
                     "token_accuracy": _ratio(sum(rows[i].tokens.token_correct for i in idx), positions),
                     # copying is right wherever the reference keeps the buggy token
                     "copy_token_accuracy": _ratio(positions - changed, positions)}
            if searched is not None:
                entry["resolved_after_search"] = float(sum(searched[i] for i in idx))
            out[axis][name] = entry
    return out


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
