"""Per-epoch augmentation of a training split: each row re-encoded with its local names renamed.

HRM multiplies its few puzzles by augmenting them; here a row's regions (buggy and fixed, as the
sequences hold them) get a consistent renaming of locals, parameters and `self` attributes
(`hrm.augment.rename_identifiers`), drawn afresh for every epoch and row from a seed that is a
function of (train seed, phase, epoch, row) only, so a resumed run sees exactly the variants an
uninterrupted one does. The renamed regions are encoded like any row (`hrm.sequences`); a
variant that no longer fits the budget, or a row with nothing to rename, is fed as stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hrm.train.data import Augment


def variant_seed(seed: int, epoch: int, index: int) -> int:
    """A stable 63-bit seed for (seed, epoch, row) (never Python's salted `hash`)."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_augment(sequences_dir: str | Path, split: str, tokenizer_dir: str | Path, seed: int,
                 rate: float = 0.5) -> Augment:
    """The `TrainArrays.augment` callable of one split of a sequences directory."""
    from hrm.augment import rename_identifiers
    from hrm.config import SequencesConfig
    from hrm.regions import Region, line_opcodes, split_lines
    from hrm.sequences import empty_inserts, encode_example, fill_row, load_split
    from hrm.tokenizer import load_tokenizer

    data = load_split(sequences_dir, split)
    tok = load_tokenizer(tokenizer_dir)
    cfg = SequencesConfig.model_validate(data.meta.config)
    records = data.records
    width = data.meta.seq_len

    def augment(index: int, epoch: int):
        record = records[index]
        pairs = [(h.buggy_text, h.fixed_text) for h in record.hunks]
        renamed = rename_identifiers(pairs, variant_seed(seed, epoch, index), rate=rate)
        if renamed is None:
            return None
        regions = [Region(h.file, h.buggy_start, buggy, fixed, h.buggy_start, h.function,
                          tuple(line_opcodes(split_lines(fixed), split_lines(buggy))))
                   for h, (buggy, fixed) in zip(record.hunks, renamed, strict=True)]
        enc = encode_example(tok, record.statement, regions, cfg)
        if isinstance(enc, str):
            return None
        inputs = np.full(width, tok.pad_id, dtype=np.int32)
        labels = np.full(width, -100, dtype=np.int32)
        inserts = empty_inserts(1, cfg.max_insertions, cfg.slots)[0]
        fill_row(inputs, labels, inserts, enc)
        return inputs, labels, inserts

    return augment
