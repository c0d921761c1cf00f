"""The listwise loss's negatives (`hrm.train.negatives`): wrong rewrites of the row as fed, in
the model's output form, never the fix, deterministic per seed; and the model's training pass
puts their positions into head columns that hold exactly those positions' tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm.rewrites import rewrites
from hrm.sequences import decode_segments, load_split
from hrm.tokenizer import load_tokenizer
from hrm.train.negatives import MAX_POSITIONS, empty_negatives, label_segments, negative_rewrites


def _negatives(tok, split, i, seed=0, count=8):
    return negative_rewrites(tok, split.inputs[i], split.labels[i], split.inserts[i], count=count,
                             slots=split.meta.slots, seed=seed)


def test_negatives_are_wrong_rewrites_of_the_row(real_sequences):
    tok = load_tokenizer(real_sequences / "tokenizer")
    rows = 0
    for name in ("corpus", "train"):
        split = load_split(real_sequences / "sequences", name)
        for i, record in enumerate(split.records):
            assert [tuple(s) for s in label_segments(split.labels[i])] == [tuple(s) for s in record.segments]
            neg = _negatives(tok, split, i)
            assert neg.shape == (8, MAX_POSITIONS, 2)
            labelled = set(np.flatnonzero(split.labels[i] != -100).tolist())
            fixed = [h.fixed_text for h in record.hunks]
            buggy = decode_segments(tok, split.inputs[i], record.segments, {})
            rewritten = [{r.text for r in rewrites(code)} for code in buggy]
            for r in neg[neg[:, 0, 0] >= 0]:
                used = r[r[:, 0] >= 0]
                assert set(used[:, 0].tolist()) <= labelled - {a for a, _ in record.segments}
                outputs = {int(p): (() if t == tok.mask_id else (int(t),)) for p, t in used}
                text = decode_segments(tok, split.inputs[i], record.segments, outputs)
                assert text != fixed  # never the fix
                changed = [k for k in range(len(text)) if text[k] != buggy[k]]
                assert len(changed) == 1 and text[changed[0]] in rewritten[changed[0]]  # one rewrite
                rows += 1
            # unused rewrites are all -1, after the used ones
            made = int((neg[:, 0, 0] >= 0).sum())
            assert (neg[made:] == -1).all()
    assert rows >= 50


def test_negatives_are_deterministic_per_seed(real_sequences):
    tok = load_tokenizer(real_sequences / "tokenizer")
    split = load_split(real_sequences / "sequences", "corpus")
    same = [np.array_equal(_negatives(tok, split, i, seed=3), _negatives(tok, split, i, seed=3))
            for i in range(len(split.records))]
    differ = [not np.array_equal(_negatives(tok, split, i, seed=3), _negatives(tok, split, i, seed=4))
              for i in range(len(split.records))]
    assert all(same) and sum(differ) >= len(differ) // 2


@pytest.mark.parametrize("head_positions", [0, 8])
def test_training_pass_gives_each_negative_its_own_head_column(tiny_params, real_sequences, head_positions):
    """Both head layouts (all label columns; a sample of 8 positions per row plus the negatives'
    positions as unlabelled extra columns): `rank_cols` points at columns holding the negative's
    position's own token, and those extra columns carry no label."""
    from hrm.model import build_model
    from hrm.train.data import load_train_arrays

    tok = load_tokenizer(real_sequences / "tokenizer")
    split = load_split(real_sequences / "sequences", "corpus")
    arrays = load_train_arrays(real_sequences / "sequences", "corpus")
    cfg = tiny_params.model.model_copy(update={"head_positions": head_positions})
    model = build_model(cfg, arrays.vocab_size, arrays.seq_len, "cpu", arrays.slots, arrays.max_insertions)
    model.train()
    b = 4
    carry = model.initial_carry(b, torch.device("cpu"))
    carry.inputs = torch.from_numpy(arrays.inputs[:b]).int()
    carry.labels = torch.from_numpy(arrays.labels[:b]).long()
    carry.inserts = torch.from_numpy(arrays.inserts[:b]).long()
    carry.valid[:] = True
    carry.negatives = empty_negatives(b, 8, "cpu")
    for i in range(b):
        carry.negatives[i] = torch.from_numpy(_negatives(tok, split, i))
    out = model(carry, labels_only=True)
    used = out.rank_cols >= 0
    assert int(used.sum()) == int((carry.negatives[..., 0] >= 0).sum()) > 0
    rows = torch.arange(b).view(-1, 1, 1).expand_as(out.rank_cols)
    own_at = out.own_tokens[rows[used], out.rank_cols[used]]
    assert torch.equal(own_at, carry.inputs.long()[rows[used], carry.negatives[..., 0][used]])
    assert torch.equal(out.rank_tokens[used], carry.negatives[..., 1][used])
    if head_positions:
        assert (out.labels[:, head_positions:] == -100).all()
        assert out.logits.shape[1] == head_positions + 8 * MAX_POSITIONS
