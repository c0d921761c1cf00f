"""Token-level scores of one row: accuracy over label tokens, exactness, and edit accuracy.

Labels are position-aligned with the model's outputs (the target positions of the input hold
the mask token and the logits at position i predict `labels[i]`); `ignore_index` marks every
position outside the target. The scores are kept per row as (correct, total) counts so that
split-level metrics are micro averages and the gate can bootstrap over rows.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class TokenScores:
    """Counts for one row. `edit_total` is 0 when the target equals the buggy code."""

    token_correct: int
    token_total: int
    exact: bool
    edit_correct: int
    edit_total: int


def target_positions(labels: np.ndarray, ignore_index: int) -> np.ndarray:
    """Indices of the label tokens of one row (the target, end token included)."""
    return np.flatnonzero(labels != ignore_index)


def edit_positions(buggy_ids: Sequence[int], target_ids: Sequence[int]) -> list[int]:
    """Target indices that are NOT copied from the buggy code under a difflib alignment.

    `SequenceMatcher` (autojunk off, so frequent tokens such as indentation are still aligned)
    matches the buggy and target token sequences; every target token outside an `equal` block
    is one a model must produce by fixing rather than copying.
    """
    return list(_edit_positions(tuple(int(t) for t in buggy_ids),
                                tuple(int(t) for t in target_ids)))


@lru_cache(maxsize=4096)
def _edit_positions(buggy_ids: tuple[int, ...], target_ids: tuple[int, ...]) -> tuple[int, ...]:
    """Cached: a row's buggy and target ids are the same for every system and candidate."""
    matcher = difflib.SequenceMatcher(a=list(buggy_ids), b=list(target_ids), autojunk=False)
    copied = np.zeros(len(target_ids), dtype=bool)
    for block in matcher.get_matching_blocks():
        copied[block.b : block.b + block.size] = True
    return tuple(int(i) for i in np.flatnonzero(~copied))


def score_row(
    predicted: np.ndarray,
    labels: np.ndarray,
    ignore_index: int,
    buggy_ids: Sequence[int],
) -> TokenScores:
    """Score one row's argmax predictions (`predicted`, [L]) against its labels ([L]).

    `buggy_ids` is the buggy region the target was derived from, encoded exactly like a target
    (end token included, so a correct end token is not counted as a fix); used only to find
    the edit positions.
    """
    pos = target_positions(labels, ignore_index)
    if pos.size == 0:
        raise ValueError("row has no label tokens")
    target = labels[pos]
    hits = predicted[pos] == target
    edits = edit_positions(buggy_ids, target.tolist())
    return TokenScores(
        token_correct=int(hits.sum()),
        token_total=int(pos.size),
        exact=bool(hits.all()),
        edit_correct=int(hits[edits].sum()) if edits else 0,
        edit_total=len(edits),
    )
