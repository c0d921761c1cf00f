"""Reference systems scored by the same row scorer as the model.

- `copy`: no position changes: the prediction is the buggy code. High token accuracy (most
  positions keep their token), and 0 on every repair metric: an unchanged output is not a repair.
- `unigram`: the context-free guess. From the TRAIN sequences it learns, per token, how often a
  position holding it changes and its most frequent changed output; in each row it changes the
  one position whose token changes most often, to that output. It shows what knowing only
  which tokens are often wrong gets, without reading the code around them.
- `untrained`: a model of the same config with fresh weights (the seed's), proposing its greedy
  fix like the trained one: what the architecture gives before any learning.
- `oracle`: the reference outputs (tests and benchmarks: the harness must score it 1.0).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

Outputs = dict[int, tuple[int, ...]]


@dataclass(frozen=True)
class UnigramGuess:
    change_rate: dict[int, float]
    """Token -> share of the train positions holding it whose output changed."""
    output: dict[int, tuple[int, ...]]
    """Token -> its most frequent changed output."""

    def predict(self, inputs: np.ndarray, segments) -> Outputs:
        """The guess: the row's position whose token changes most often (the first such
        position on a tie) changed to that token's most frequent output; {} when no token of
        the row ever changed in training."""
        best = self.candidates(inputs, segments, 1)
        return best[0] if best else {}

    def candidates(self, inputs: np.ndarray, segments, limit: int) -> list[Outputs]:
        """The guess's search candidates: single edits at the row's positions in order of their
        token's change rate (position order on a tie), up to `limit`."""
        ranked = []
        for anchor, n in segments:
            for pos in range(anchor + 1, anchor + n + 1):
                rate = self.change_rate.get(int(inputs[pos]))
                if rate is not None:
                    ranked.append((-rate, pos))
        return [{pos: self.output[int(inputs[pos])]} for _, pos in sorted(ranked)[:limit]]


def fit_unigram(train, *, delete_id: int, end_id: int) -> UnigramGuess:
    """Fit the guess on a loaded train split (`hrm.sequences.SequenceSplit`)."""
    from hrm.sequences import label_outputs

    seen: Counter[int] = Counter()
    changed: Counter[int] = Counter()
    outs: dict[int, Counter[tuple[int, ...]]] = defaultdict(Counter)
    for i, record in enumerate(train.records):
        ref = label_outputs(train.inputs[i], train.labels[i], train.inserts[i], record.segments,
                            delete_id=delete_id, end_id=end_id)
        anchors = {a for a, _ in record.segments}
        for anchor, n in record.segments:
            for pos in range(anchor + 1, anchor + n + 1):
                tok = int(train.inputs[i][pos])
                seen[tok] += 1
                if pos in ref and pos not in anchors:
                    changed[tok] += 1
                    outs[tok][ref[pos]] += 1
    if not changed:
        raise ValueError("the train split changes no position: no unigram guess")
    rate = {t: changed[t] / seen[t] for t in changed}
    output = {t: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for t, c in outs.items()}
    return UnigramGuess(rate, output)
