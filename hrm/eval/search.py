"""SWE-search: verifier-guided search over candidate fixes, per example, against greedy decoding.

Iteration 0 is the greedy prediction. Each of at most `max_iterations` iterations proposes up to
`candidates_per_iteration` candidates, rotating three sources:
  1. argmax after a different number of ACT segments (1..halt_max_steps-1; greedy's is the last);
  2. sampling every target position at `temperature` (draws pre-made per row, seeded per row);
  3. the current best with its `alternative_positions` least confident tokens replaced by the
     next most likely token (successive candidates move to the next least confident ones).
The search never holds full [T, V] logits: per source it keeps the argmax ids, the top-2 tokens
and their probabilities per position (`SourceView`) and q_halt; samples are drawn when the
batch's logits exist and kept as ids (`Sample`).

Verifier (`verify`), reference-free: it never reads the reference fix (`Hunk.fixed_text`).
  - A candidate holding special tokens inside its target (`hrm.eval.decoding`) fails.
  - With an environment: the candidate is spliced into its BUGGY file (the pristine tree plus
    the bug patch) and the file must compile; then the instance's test harness runs
    (FAIL_TO_PASS + the seeded PASS_TO_PASS sample) and every test must pass. PASS_TO_PASS tests
    that also fail when the same selection runs on the ORIGINAL repository (the pristine tree,
    before the bug patch) are ignored (order-dependent tests); the reference fix is never run.
  - Without one: each hunk must compile under the smallest wrapper in which the row's BUGGY hunk
    compiles (a buggy hunk that is blank or compiles in no wrapper: the candidate's own smallest
    wrapper, said in the verdict's reason), and sigmoid(q_halt) > 0.5; ranked by the Q score.
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
from hrm.eval.code_checks import files_compile
from hrm.eval.decoding import special_reason, special_tokens_of
from hrm.eval.execution import RowContext
from hrm.eval.fragments import compiles, is_blank, reference_wrapper

PATIENCE = 2
"""Iterations the passing best must stay unchanged to count as converged."""

TOP_K = 2
"""Tokens kept per position: enough for "the next most likely token other than the chosen one"."""


@dataclass(frozen=True)
class Verdict:
    passes: bool
    rank: tuple[float, ...]
    reason: str


@dataclass(frozen=True)
class SourceView:
    """What the search keeps of one run's target region (no full logits)."""

    name: str
    top_ids: np.ndarray
    """int64 [T, TOP_K] most likely tokens per position, best first (column 0 = argmax)."""
    top_probs: np.ndarray
    """float32 [T, TOP_K] their softmax probabilities."""
    q_halt: float
    conf: np.ndarray | None = None
    """float32 [T] probability of the tokens this source's candidate chose; None: of the argmax."""

    @property
    def ids(self) -> np.ndarray:
        return self.top_ids[:, 0]

    @property
    def chosen_conf(self) -> np.ndarray:
        return self.top_probs[:, 0] if self.conf is None else self.conf


@dataclass(frozen=True)
class Sample:
    """One pre-drawn sample of the target region: ids and each token's untempered probability."""

    ids: np.ndarray
    probs: np.ndarray


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


def max_samples(cfg: SearchConfig) -> int:
    """Upper bound on the samples one row's search can consume (every slot a sample)."""
    return cfg.max_iterations * cfg.candidates_per_iteration


def _q_prob(q_halt: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(q_halt, 50.0), -50.0)))


def fragment_compiles(candidate: str, buggy: str) -> tuple[bool, str]:
    """The no-environment compile check of one hunk, from the buggy hunk (never the reference)."""
    if is_blank(candidate):
        return False, "blank hunk"
    wrapper = reference_wrapper(buggy)
    if wrapper is None:
        own = reference_wrapper(candidate)
        return own is not None, "buggy hunk compiles in no wrapper: candidate's own wrapper"
    return compiles(wrapper.apply(candidate)), f"wrapper of the buggy hunk ({wrapper.description})"


def verify(ctx: RowContext | str, hunks: list[str], q_halt: float, scorer,
           buggy_hunks: Sequence[str]) -> Verdict:
    """Reference-free verdict on a candidate (see the module docstring). `buggy_hunks`: the
    row's buggy regions (used without an environment)."""
    q_prob = _q_prob(q_halt)
    if special_tokens_of(hunks):  # not what the model wrote: never verified as code
        return Verdict(False, (0.0, 0.0, q_prob), special_reason(special_tokens_of(hunks)))
    if isinstance(ctx, RowContext):
        if len(hunks) != len(ctx.hunks):
            return Verdict(False, (0.0, 0.0, q_prob), f"{len(hunks)} hunks, expected {len(ctx.hunks)}")
        try:
            compiled = files_compile(ctx.hunks, hunks, ctx.buggy_files)
        except ValueError as err:
            return Verdict(False, (0.0, 0.0, q_prob), f"does not splice into its file: {err}")
        if not compiled:
            return Verdict(False, (0.0, 0.0, q_prob), "does not compile in its buggy file")
        if not scorer.run_tests or scorer.execution is None:
            return Verdict(q_prob > 0.5, (0.0, 1.0, q_prob), "compiles; tests disabled")
        outcome = scorer.execution.run(ctx, hunks, baseline="original")
        return Verdict(outcome.resolved, (float(outcome.resolved), 1.0, q_prob), outcome.reason)
    if len(hunks) != len(buggy_hunks):
        return Verdict(False, (0.0, 0.0, q_prob), f"{len(hunks)} hunks, expected {len(buggy_hunks)}")
    checks = [fragment_compiles(h, b) for h, b in zip(hunks, buggy_hunks, strict=True)]
    compiled = all(ok for ok, _ in checks)
    passes = compiled and q_prob > 0.5
    how = "; ".join(sorted({why for _, why in checks}))
    return Verdict(passes, (float(passes), float(compiled), q_prob),
                   ("compiles, Q says halt" if passes else "fails compile or Q check") + f" [{how}]")


def search_row(
    *,
    greedy_ids: np.ndarray,
    greedy: SourceView,
    steps: Sequence[SourceView],
    samples: Sequence[Sample],
    target_start: int,
    decode: Callable[[np.ndarray], list[str]],
    check: Callable[[list[str], float], Verdict],
    cfg: SearchConfig,
) -> SearchOutcome:
    """Search one row. `greedy`: the greedy run's view (its `conf` = probabilities of
    `greedy_ids`' target tokens); `steps`: the other ACT segment counts; `samples`: draws from
    the greedy run at `cfg.temperature`, consumed in order (at least `max_samples(cfg)`)."""
    greedy_hunks = decode(greedy_ids)
    first = check(greedy_hunks, greedy.q_halt)
    # best = (verdict, ids, hunks, source name, view for alternatives, q, conf of chosen tokens)
    best = (first, greedy_ids, greedy_hunks, "greedy", greedy, greedy.q_halt, greedy.chosen_conf)
    seen = {tuple(greedy_ids[target_start:].tolist())}
    candidates = iterations = 0
    unchanged = 0
    converged = False
    alt_offset = 0
    step_queue = list(steps)
    sample_queue = list(samples)
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
                view = step_queue.pop(0)
                name, q, conf = view.name, view.q_halt, view.chosen_conf.copy()
                ids[target_start:] = view.ids
            elif kind == 2 and cfg.alternative_positions > 0:
                view, q = best[4], best[5]
                name = f"alternative@{best[3]}"
                chosen = ids[target_start:]
                conf = best[6].copy()
                order = np.argsort(conf, kind="stable")
                picks = order[alt_offset:alt_offset + cfg.alternative_positions]
                alt_offset += cfg.alternative_positions
                for p in picks:
                    k = 0 if view.top_ids[p, 0] != chosen[p] else 1
                    chosen[p], conf[p] = view.top_ids[p, k], view.top_probs[p, k]
            else:
                if not sample_queue:
                    raise ValueError(f"search needs up to {max_samples(cfg)} samples per row")
                draw = sample_queue.pop(0)
                name, view, q = f"sample(T={cfg.temperature})", greedy, greedy.q_halt
                ids[target_start:] = draw.ids
                conf = draw.probs.copy()
            key = tuple(ids[target_start:].tolist())
            if key in seen:
                continue
            seen.add(key)
            candidates += 1
            hunks = decode(ids)
            verdict = check(hunks, q)
            if verdict.rank > best[0].rank:
                best = (verdict, ids, hunks, name, view, q, conf)
                changed = True
        unchanged = 0 if changed else unchanged + 1
    if best[0].passes and unchanged >= PATIENCE:
        converged = True
    return SearchOutcome(first.passes, best[1], best[2], best[0].passes, candidates,
                         iterations, converged, best[3])


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
