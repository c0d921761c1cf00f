"""A row's rewrites (`hrm.rewrites`) in the model's output form, for the proposals to score.

Each segment's code is decoded, rewritten as text, and put in output form by the same rule that
makes the training labels (`hrm.sequences.encode_example`): a swap at its pivot (`hrm.swaps`),
anything else re-encoded and aligned with the buggy tokens (`hrm.edits.encode_edits`), so a
rewrite equal to the reference fix has exactly the reference's outputs. A rewrite longer than
the positions can hold is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hrm.edits import encode_edits, pivot_targets
from hrm.rewrites import rewrites
from hrm.swaps import Swaps

Outputs = dict[int, tuple[int, ...]]


def rewrite_outputs(tokenizer, inputs: np.ndarray, segments: Sequence[Sequence[int]], slots: int
                    ) -> list[tuple[str, Outputs]]:
    """(kind, outputs) of every distinct rewrite of one row's segments (row positions, as
    `hrm.sequences.decode_segments` takes them), in `hrm.rewrites` order."""
    out: list[tuple[str, Outputs]] = []
    seen: set[tuple] = set()
    for anchor, n in segments:
        code = [int(t) for t in inputs[anchor + 1: anchor + 1 + n]]
        swaps = Swaps(tokenizer, code)
        for rewrite in rewrites(swaps.text):
            pivot = swaps.pivot_of(rewrite.text)
            targets = (pivot_targets(code, pivot, tokenizer.swap_id) if pivot is not None
                       else encode_edits(code, tokenizer.encode(rewrite.text), slots))
            if targets is None:
                continue
            outputs = {anchor + e: targets.outputs[e] for e in targets.edited}
            key = tuple(sorted(outputs.items()))
            if outputs and key not in seen:
                seen.add(key)
                out.append((rewrite.kind, outputs))
    return out


def split_rewrites(tokenizer, split, slots: int) -> list[list[tuple[str, Outputs]]]:
    """`rewrite_outputs` of every row of a loaded split (`hrm.sequences.SequenceSplit`)."""
    return [rewrite_outputs(tokenizer, split.inputs[i], r.segments, slots)
            for i, r in enumerate(split.records)]
