"""SWE-search: verifier-guided search over candidate fixes, per example, against greedy decoding.

Iteration 0 is the greedy prediction. Each of at most `max_iterations` iterations proposes up to
`candidates_per_iteration` candidates, rotating three sources:
  1. argmax after a different number of ACT segments (1..halt_max_steps, other than greedy's);
  2. sampling every target position at `temperature` with a seed fixed per (row, candidate);
  3. the current best with its `alternative_positions` least confident tokens replaced by the
     next most likely token (successive candidates move to the next least confident ones).
The verifier never sees the reference: with an environment, the candidate must compile in the
buggy file and pass the row's tests (resolved); without one, it must compile under its own
smallest wrapper and the Q head must say halt (sigmoid(q_halt) > 0.5), ranked by the Q score.
The best candidate is kept; the search has converged when the best passes the verifier and has
not changed for the last 2 iterations, and stops there.

Metrics: `greedy_pass_rate` / `swe_search_score` = share of rows whose greedy / selected candidate
passes the verifier; `swe_search_candidates` and `swe_search_iterations` = mean per row;
`swe_search_convergence_rate` = share converged; `swe_search_efficiency` = (score - greedy pass
rate) / mean candidates; `swe_search_tiered_accuracy` = reference-based tiered score of the
selected candidates (compare with `code_tiered_accuracy`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hrm.config import SearchConfig
from hrm.eval.execution import RowContext
from hrm.eval.fragments import reference_wrapper

PATIENCE = 2
"""Iterations the passing best must stay unchanged to count as converged."""


@dataclass(frozen=True)
class Verdict:
    passes: bool
    rank: tuple[float, ...]
    reason: str


@dataclass
class SearchOutcome:
    """Search result for one row."""

    greedy_passes: bool
    best_ids: np.ndarray
    best_hunks: list[str]
    best_passes: bool
    candidates: int
    iterations: int
    converged: bool
    best_source: str


def verify(ctx: RowContext | str, hunks: list[str], q_halt: float, scorer) -> Verdict:
    """Reference-free verdict on a candidate (see the module docstring)."""
    q_prob = 1.0 / (1.0 + math.exp(-max(min(q_halt, 50.0), -50.0)))
    if isinstance(ctx, RowContext):
        code = scorer.code_check(ctx, hunks, [h.fixed_text for h in ctx.hunks])
        if not code.compiles:
            return Verdict(False, (0.0, 0.0, q_prob), "does not compile in its file")
        if not scorer.run_tests:
            return Verdict(q_prob > 0.5, (0.0, 1.0, q_prob), "compiles; tests disabled")
        resolved, reason, _ = scorer.test(ctx, code, hunks)
        return Verdict(bool(resolved), (float(bool(resolved)), 1.0, q_prob), reason)
    compiled = all(h.strip() and reference_wrapper(h) is not None for h in hunks)
    passes = compiled and q_prob > 0.5
    return Verdict(passes, (float(passes), float(compiled), q_prob),
                   "compiles, Q says halt" if passes else "fails compile or Q check")




def search_row(
    *,
    greedy_ids: np.ndarray,
    greedy_q: float,
    step_logits: Sequence[tuple[str, np.ndarray, float]],
    target_start: int,
    decode: Callable[[np.ndarray], list[str]],
    check: Callable[[list[str], float], Verdict],
    cfg: SearchConfig,
    seed: int,
) -> SearchOutcome:
    """Search one row. `step_logits`: (source name, target-region logits [T, V], q_halt) of the
    alternative ACT segment counts, then of the greedy run last (used for sampling)."""
    rng = np.random.default_rng(seed)
    greedy_hunks = decode(greedy_ids)
    greedy = check(greedy_hunks, greedy_q)
    best = (greedy, greedy_ids, greedy_hunks, "greedy", step_logits[-1][1], greedy_q)
    seen = {tuple(greedy_ids[target_start:].tolist())}
    candidates = iterations = 0
    unchanged = 0
    converged = False
    alt_offset = 0
    step_queue = list(step_logits[:-1])
    base_logits = step_logits[-1][1]
    for _ in range(cfg.max_iterations):
        if best[0].passes and unchanged >= PATIENCE:
            converged = True
            break
        iterations += 1
        changed = False
        for j in range(cfg.candidates_per_iteration):
            kind = (candidates + j) % 3
            ids = best[1].copy()
            if kind == 0 and step_queue:
                name, logits, q = step_queue.pop(0)
                ids[target_start:] = logits.argmax(-1)
            elif kind == 2 and cfg.alternative_positions > 0:
                name, logits, q = f"alternative@{best[3]}", best[4], best[5]
                probs = _softmax(logits)
                chosen = ids[target_start:]
                conf = probs[np.arange(len(chosen)), chosen]
                order = np.argsort(conf, kind="stable")
                picks = order[alt_offset:alt_offset + cfg.alternative_positions]
                alt_offset += cfg.alternative_positions
                for p in picks:
                    ranked = np.argsort(-probs[p], kind="stable")
                    ids[target_start + p] = next(t for t in ranked if t != chosen[p])
            else:
                name, logits, q = f"sample(T={cfg.temperature})", base_logits, greedy_q
                probs = _softmax(logits / cfg.temperature)
                cum = probs.cumsum(-1)
                draws = rng.random(len(probs))[:, None]
                ids[target_start:] = np.minimum((cum < draws).sum(-1), probs.shape[-1] - 1)
            key = tuple(ids[target_start:].tolist())
            if key in seen:
                continue
            seen.add(key)
            candidates += 1
            hunks = decode(ids)
            verdict = check(hunks, q)
            if verdict.rank > best[0].rank:
                best = (verdict, ids, hunks, name, logits, q)
                changed = True
        unchanged = 0 if changed else unchanged + 1
    if best[0].passes and unchanged >= PATIENCE:
        converged = True
    return SearchOutcome(greedy.passes, best[1], best[2], best[0].passes, candidates,
                         iterations, converged, best[3])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def search_metrics(outcomes: Sequence[SearchOutcome], tiered: Sequence[float | None],
                   ) -> dict[str, float | None]:
    """Split-level search metrics (definitions in the module docstring)."""
    if not outcomes:
        return {}
    n = len(outcomes)
    greedy = sum(o.greedy_passes for o in outcomes) / n
    score = sum(o.best_passes for o in outcomes) / n
    cands = sum(o.candidates for o in outcomes) / n
    scored = [t for t in tiered if t is not None]
    return {
        "greedy_pass_rate": greedy,
        "swe_search_score": score,
        "swe_search_candidates": cands,
        "swe_search_iterations": sum(o.iterations for o in outcomes) / n,
        "swe_search_convergence_rate": sum(o.converged for o in outcomes) / n,
        "swe_search_efficiency": (score - greedy) / cands if cands else None,
        "swe_search_tiered_accuracy": sum(scored) / len(scored) if scored else None,
    }
