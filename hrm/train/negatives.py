"""Wrong rewrites of a training row: the negatives of the listwise rewrite loss.

At evaluation the fix is chosen among the rewrites of the buggy code (`hrm.rewrites`), each
scored by its gain: the log-probability of its outputs minus keeping those positions
(`hrm.eval.proposals`). Training's per-position losses never compare one rewrite against
another, so a model can put its change probability on several suspicious positions at once and
rank a wrong rewrite first. The listwise loss (`hrm.model.losses.rank_loss`, `train.rank_weight`)
trains that comparison directly: per row, a softmax over {the fix, a sample of the row's other
rewrites} of their gains, whose target is the fix (BugLab's joint localisation and rewrite
objective, in this model's output form). Measured at the cpu budget: no gain (BENCHMARKS.md
"What did not lift the held-out exact rate"), so it is off in every profile.

The negatives are drawn from the row as it is fed (so an augmented variant gets its own): the
code segments are the runs of labelled positions (a segment's anchor, then its tokens,
`hrm.sequences`); each segment's code is decoded, rewritten, re-encoded and aligned with the
buggy tokens by `hrm.edits.encode_edits` over the changed middle only (the common prefix and
suffix kept; evaluation aligns the whole segment, which rarely differs). Only rewrites that
replace or delete tokens at up to `positions` positions are kept (an insertion needs the slot
head, which training runs only at the fix's own insertions), and never the fix itself (compared
as tokens with the row's labels applied). Segments are visited in a shuffled order, so a row of
several segments draws mostly from the first. Which rewrites are drawn depends on `seed` only
(exact resume holds).

Cost: one parse of the segment and its candidate edits, then about 0.4 ms per rewrite checked
and encoded (`hrm.rewrites.iter_rewrites` checks them lazily, in a shuffled order).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from hrm.edits import encode_edits
from hrm.model.losses import IGNORE_INDEX
from hrm.rewrites import iter_rewrites
from hrm.sequences import decode_segments, label_outputs

MAX_POSITIONS = 6
"""A negative changes at most this many positions (a swap of two multi-token operands fits)."""


def label_segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """(anchor, code length) of every run of labelled positions of a row."""
    labelled = np.flatnonzero(np.asarray(labels) != IGNORE_INDEX)
    if labelled.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(labelled) > 1)
    starts = np.concatenate([[labelled[0]], labelled[breaks + 1]])
    ends = np.concatenate([labelled[breaks], [labelled[-1]]])
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def _candidates(tokenizer, inputs: np.ndarray, segments: list[tuple[int, int]], rng: random.Random):
    """(anchor, code, rewritten text) of the segments' rewrites, each segment's in a shuffled
    order, checked lazily (`hrm.rewrites.iter_rewrites`)."""
    for anchor, n in segments:
        code = [int(t) for t in inputs[anchor + 1: anchor + 1 + n]]
        for rewrite in iter_rewrites(tokenizer.decode(code), rng=rng):
            yield anchor, code, rewrite.text


def _local_outputs(code: list[int], new: list[int], slots: int) -> dict[int, tuple[int, ...]] | None:
    """`encode_edits(code, new)` as {position (token i is i + 1; 0: an insertion before the
    changed middle): output} of the changed positions, aligned over the changed middle only (the
    common prefix and suffix are kept): a rewrite changes a few tokens of a long function, and
    aligning the whole of it dominated the cost."""
    p = 0
    while p < len(code) and p < len(new) and code[p] == new[p]:
        p += 1
    s = 0
    while s < len(code) - p and s < len(new) - p and code[-1 - s] == new[-1 - s]:
        s += 1
    lo = max(p - 1, 0)  # one kept token before the change, so an insertion after it is seen
    mid = encode_edits(code[lo:len(code) - s], new[lo:len(new) - s], slots)
    if mid is None:
        return None
    outputs = {lo + e: mid.outputs[e] for e in mid.edited if e}
    if 0 in mid.edited:  # an insertion before the middle: position 0 stands for it
        outputs[0] = mid.outputs[0]
    return outputs


def negative_rewrites(tokenizer, inputs: np.ndarray, labels: np.ndarray, inserts: np.ndarray, *,
                      count: int, slots: int, seed: int, positions: int = MAX_POSITIONS) -> np.ndarray:
    """Up to `count` wrong rewrites of one row as int64 [count, positions, 2]: per rewrite its
    (row position, new first token) pairs (`tokenizer.mask_id` deletes), -1 where unused. The
    fix (the row's labels and inserts applied) is never one of them."""
    out = np.full((count, positions, 2), -1, dtype=np.int64)
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    rng = random.Random(seed)
    segments = label_segments(labels)
    fix = label_outputs(inputs, labels, np.asarray(inserts), segments, delete_id=tokenizer.mask_id,
                        end_id=tokenizer.eos_id)
    fixed = {a: tokenizer.encode(text) for (a, _), text in
             zip(segments, decode_segments(tokenizer, inputs, segments, fix), strict=True)}
    rng.shuffle(segments)
    made = 0
    seen: set[tuple] = set()
    for anchor, code, text in _candidates(tokenizer, inputs, segments, rng):
        if made >= count:
            break
        new = tokenizer.encode(text)
        if new == fixed[anchor]:
            continue
        outs = _local_outputs(code, new, slots)
        if not outs or len(outs) > positions or any(e <= 0 or len(o) > 1 for e, o in outs.items()):
            continue  # no change, too many positions, or an insertion
        key = tuple(sorted((anchor + e, o[0] if o else tokenizer.mask_id) for e, o in outs.items()))
        if key in seen:
            continue
        seen.add(key)
        out[made, : len(key)] = key
        made += 1
    return out


def make_negatives(tokenizer_dir, seed: int, count: int, slots: int):
    """The `TrainArrays.negatives` callable of a phase: each row's draw seeded by (seed, epoch,
    row) (`hrm.train.augmentation.variant_seed`)."""
    from hrm.tokenizer import load_tokenizer
    from hrm.train.augmentation import variant_seed

    tok = load_tokenizer(tokenizer_dir)

    def negatives(index: int, epoch: int, inputs: np.ndarray, labels: np.ndarray, inserts: np.ndarray
                  ) -> np.ndarray:
        return negative_rewrites(tok, inputs, labels, inserts, count=count, slots=slots,
                                 seed=variant_seed(seed, epoch, index))

    return negatives


def empty_negatives(batch: int, count: int, device) -> torch.Tensor:
    """A carry's `negatives` with none drawn yet: int64 [batch, count, MAX_POSITIONS, 2] of -1."""
    return torch.full((batch, count, MAX_POSITIONS, 2), -1, dtype=torch.int64, device=device)
