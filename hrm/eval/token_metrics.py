"""Position-level scores of one prediction: every labelled position's output against the
reference's, kept per row as counts so split metrics are micro averages and the gate can
bootstrap over rows.

A prediction and a reference are both `{position: output tokens}` for the positions they change
(`hrm.sequences.label_outputs`, `hrm.eval.proposals`); a position absent from one keeps its own
token there. `token` counts every labelled position (copying scores the share of unchanged
positions: high, and no evidence of repair); `edit` counts the positions the reference changes
(copying scores 0 there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenScores:
    token_correct: int
    token_total: int
    edit_correct: int
    edit_total: int
    """Positions the reference changes (0 only for a reference equal to the buggy code)."""
    located: bool
    """The prediction changes exactly the positions the reference changes (right or not)."""


def labelled_positions(segments: Sequence[Sequence[int]]) -> Iterable[int]:
    """Every position that carries a label: each segment's anchor and its code tokens."""
    for anchor, n in segments:
        yield from range(anchor, anchor + n + 1)


def score_outputs(pred: Mapping[int, Sequence[int]], ref: Mapping[int, Sequence[int]],
                  segments: Sequence[Sequence[int]]) -> TokenScores:
    positions = list(labelled_positions(segments))
    if not positions:
        raise ValueError("row has no labelled positions")
    pred_t = {p: tuple(int(t) for t in v) for p, v in pred.items()}
    ref_t = {p: tuple(int(t) for t in v) for p, v in ref.items()}
    correct = sum(pred_t.get(p) == ref_t.get(p) for p in positions)
    edit_correct = sum(pred_t.get(p) == out for p, out in ref_t.items())
    return TokenScores(token_correct=correct, token_total=len(positions),
                       edit_correct=edit_correct, edit_total=len(ref_t),
                       located=set(pred_t) == set(ref_t))
