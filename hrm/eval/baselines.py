"""Reference baselines scored by the same row scorer as the model.

- `copy`: the prediction is the buggy region itself (each hunk's buggy text, joined by the hunk
  separator, then the end token): what a model that learned only to copy would output. It scores
  high on token accuracy and compilation and about 0 on edit accuracy and resolved rate.
- `unigram`: the single most frequent label token of the TRAIN split (end token included in the
  count) at every target position: the best constant per-token guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def target_ids(texts: Sequence[str], tokenizer) -> list[int]:
    """Hunk texts encoded exactly like a target: joined by the hunk id, then the end token."""
    ids: list[int] = []
    for k, text in enumerate(texts):
        if k:
            ids.append(tokenizer.hunk_id)
        ids += tokenizer.encode(text)
    return ids + [tokenizer.eos_id]


def place(ids: Sequence[int], labels: np.ndarray, ignore_index: int, fill: int) -> np.ndarray:
    """A prediction row: `ids` laid over the target region (cut to it), `fill` elsewhere."""
    pos = np.flatnonzero(labels != ignore_index)
    start, region = int(pos[0]), labels.shape[0] - int(pos[0])
    row = np.full(labels.shape, fill, dtype=np.int64)
    kept = list(ids)[:region]
    row[start:start + len(kept)] = kept
    return row


def unigram_token(train_labels: np.ndarray, ignore_index: int) -> int:
    """Most frequent label token of the train split (ties: the smallest id)."""
    values = train_labels[train_labels != ignore_index]
    if values.size == 0:
        raise ValueError("the train split has no label tokens")
    counts = np.bincount(values.astype(np.int64))
    return int(counts.argmax())
