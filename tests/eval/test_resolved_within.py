"""The search's curve: resolved within the first k candidates, read off the first pass's rank."""

from hrm.eval.search import SearchOutcome, resolved_within, search_metrics


def _outcome(rank: int, passes: bool, verifier: str = "tests") -> SearchOutcome:
    return SearchOutcome(greedy_passes=passes and rank == 0, best_outputs={}, best_hunks=["x"],
                         best_passes=passes, candidates=rank + 1, iterations=0, converged=passes,
                         verifier=verifier, best_rank=rank)


def test_curve_counts_each_row_from_its_first_passing_rank():
    rows = [_outcome(0, True), _outcome(2, True), _outcome(4, True), _outcome(4, False)]
    assert resolved_within(rows, 5) == {"1": 0.25, "2": 0.25, "3": 0.5, "4": 0.5, "5": 0.75}


def test_static_passes_are_not_resolved():
    # a compile check is not a resolution: the curve, like resolved_after_search, counts tests only
    rows = [_outcome(0, True, "static"), _outcome(1, True)]
    m = search_metrics(rows, [False, False], 2)
    assert m["resolved_within"] == {"1": 0.0, "2": 0.5}
    assert m["resolved_within"]["2"] == m["resolved_after_search"]
    assert m["swe_search_score"] == 1.0
