"""SWE-search: the model's alternative edits, each checked by a verifier, against its greedy fix.

Candidates are the model's own ranked edits (`hrm.eval.proposals.RowProposal.candidates`: the
rewrites of the buggy code best score first (`eval.fix_space: rewrites`), then the single edits,
locations x rewrites of one token, best gain first, then joint choices over several positions),
the greedy fix first. Iteration 0
checks the greedy fix; each of at most `max_iterations` iterations checks the next
`candidates_per_iteration` candidates. The search stops at the first candidate the verifier
passes (a pass cannot be bettered) or when the budget is spent.

Verifier (named in the metrics as `swe_search_verifier`), never the reference fix:
  - `tests`: the candidate is spliced into its BUGGY file, which must compile; then the
    instance's test selection runs in the sandbox (FAIL_TO_PASS + the seeded PASS_TO_PASS
    sample) and every test must pass. PASS_TO_PASS tests that also fail on the ORIGINAL
    repository (the pristine tree) are ignored. This is pass@k with test feedback: the same tests
    that score `resolved_rate` pick the candidate, and the metrics say so.
  - `static` (a row without an environment): the candidate compiles in its context. That is a
    weak check (most small edits compile); such rows are counted apart.
A candidate identical to the buggy code, or holding special tokens, never passes.

Metrics: `greedy_pass_rate` (pass@1) and `swe_search_score` (pass@k, k = the candidates
checked) = share of rows whose greedy / any candidate passes the verifier; `resolved_after_search`
= the same under the `tests` verifier over all rows (rows without tests count as not
resolved); `swe_search_candidates` and `swe_search_iterations` = means per row;
`swe_search_convergence_rate` = share of rows whose search ended on a passing candidate that
would have stayed the best for `patience` further iterations within the budget (found at an
iteration i with i + patience <= max_iterations; a pass cannot be bettered and candidates come
best first, so those iterations are not spent); `swe_search_efficiency` = (score -
greedy pass rate) / mean candidates; `exact_after_search` = share of rows whose selected
candidate (the passing one, else the greedy fix) equals the reference; `resolved_within` =
{k: share of rows resolved (the `tests` verifier) by one of their first k candidates} for k = 1
.. the budget: the search's curve, read off the rank of the first passing candidate (the search
stops there), so a smaller budget's figure needs no rerun. Beside the untrained model's curve it
shows from which k the candidate space alone, not the model's ranking, finds the fixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hrm.config import SearchConfig
from hrm.eval.code_checks import files_compile
from hrm.eval.decoding import special_reason, special_tokens_of
from hrm.eval.execution import RowContext
from hrm.eval.fragments import compiles, is_blank, reference_wrapper

Outputs = dict[int, tuple[int, ...]]


@dataclass(frozen=True)
class Verdict:
    passes: bool
    verifier: str
    """`tests` or `static`."""
    reason: str


@dataclass
class SearchOutcome:
    """Search result for one row."""

    greedy_passes: bool
    best_outputs: Outputs
    best_hunks: list[str]
    best_passes: bool
    candidates: int
    """Candidates checked, the greedy fix included."""
    iterations: int
    converged: bool
    verifier: str
    best_rank: int
    """Index of the selected candidate in the model's ranking (0: the greedy fix)."""


def fragment_compiles(candidate: str, buggy: str) -> tuple[bool, str]:
    """The no-environment compile check of one region, in the buggy region's wrapper."""
    if is_blank(candidate):
        return False, "blank region"
    wrapper = reference_wrapper(buggy)
    if wrapper is None:
        own = reference_wrapper(candidate)
        return own is not None, "buggy region compiles in no wrapper: candidate's own wrapper"
    return compiles(wrapper.apply(candidate)), f"wrapper of the buggy region ({wrapper.description})"


def verify(ctx: RowContext | str, hunks: list[str], scorer, buggy_hunks: Sequence[str]) -> Verdict:
    """Reference-free verdict on a candidate (see the module docstring)."""
    verifier = "tests" if (isinstance(ctx, RowContext) and scorer.run_tests
                           and scorer.execution is not None) else "static"
    if special_tokens_of(hunks):
        return Verdict(False, verifier, special_reason(special_tokens_of(hunks)))
    if list(hunks) == list(buggy_hunks):
        return Verdict(False, verifier, "unchanged: the buggy code")
    if isinstance(ctx, RowContext):
        try:
            compiled = files_compile(ctx.hunks, hunks, ctx.buggy_files)
        except ValueError as err:
            return Verdict(False, verifier, f"does not splice into its file: {err}")
        if not compiled:
            return Verdict(False, verifier, "does not compile in its buggy file")
        if verifier == "static":
            return Verdict(True, verifier, "compiles in its buggy file (tests disabled)")
        outcome = scorer.execution.run(ctx, hunks, baseline="original")
        return Verdict(outcome.resolved, verifier, outcome.reason)
    checks = [fragment_compiles(h, b) for h, b in zip(hunks, buggy_hunks, strict=True)]
    ok = all(c for c, _ in checks)
    return Verdict(ok, verifier, ("compiles" if ok else "does not compile") + " ["
                   + "; ".join(sorted({why for _, why in checks})) + "]")


def search_row(candidates: Sequence[Outputs], decode: Callable[[Outputs], list[str]],
               check: Callable[[list[str]], Verdict], cfg: SearchConfig) -> SearchOutcome:
    """Search one row over `candidates` (the greedy fix first)."""
    if not candidates:
        raise ValueError("search needs at least the greedy candidate")
    budget = cfg.budget
    first_hunks = decode(candidates[0])
    first = check(first_hunks)
    best = (candidates[0], first_hunks, first, 0)
    checked = 1
    iterations = 0
    if not first.passes:
        for k in range(1, min(budget, len(candidates))):
            iterations = 1 + (k - 1) // cfg.candidates_per_iteration
            hunks = decode(candidates[k])
            verdict = check(hunks)
            checked += 1
            if verdict.passes:
                best = (candidates[k], hunks, verdict, k)
                break
    converged = best[2].passes and iterations + cfg.patience <= cfg.max_iterations
    return SearchOutcome(first.passes, best[0], best[1], best[2].passes, checked, iterations,
                         converged, first.verifier, best[3])


def resolved_within(outcomes: Sequence[SearchOutcome], budget: int) -> dict[str, float]:
    """{str(k): share of rows resolved by the tests within their first k candidates}, k = 1 ..
    `budget`."""
    n = max(len(outcomes), 1)
    ranks = [o.best_rank for o in outcomes if o.best_passes and o.verifier == "tests"]
    return {str(k): sum(r < k for r in ranks) / n for k in range(1, budget + 1)}


def search_metrics(outcomes: Sequence[SearchOutcome], exact_after: Sequence[bool], budget: int
                   ) -> dict[str, Any]:
    """Split-level search metrics (definitions in the module docstring)."""
    if not outcomes:
        return {}
    n = len(outcomes)
    greedy = sum(o.greedy_passes for o in outcomes) / n
    score = sum(o.best_passes for o in outcomes) / n
    cands = sum(o.candidates for o in outcomes) / n
    verifiers = sorted({o.verifier for o in outcomes})
    return {
        "greedy_pass_rate": greedy,
        "swe_search_score": score,
        "resolved_after_search": sum(o.best_passes and o.verifier == "tests" for o in outcomes) / n,
        "swe_search_candidates": cands,
        "swe_search_iterations": sum(o.iterations for o in outcomes) / n,
        "swe_search_convergence_rate": sum(o.converged for o in outcomes) / n,
        "swe_search_efficiency": (score - greedy) / cands if cands else None,
        "exact_after_search": sum(exact_after) / n,
        "swe_search_rows_static": float(sum(o.verifier == "static" for o in outcomes)),
        "swe_search_verifier": "+".join(verifiers),
        "resolved_within": resolved_within(outcomes, budget),
    }
