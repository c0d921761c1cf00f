"""Helpers of the model tests (imported by conftest.py and test modules): a carry holding edit
labels in the layout of hrm.sequences, and the losses of one segment's output."""

from __future__ import annotations

import torch

from hrm.model.losses import act_losses

EOS = 2


def edit_carry(model, spans, *, seed: int = 0, invalid: tuple[int, ...] = ()):
    """A carry of len(spans) rows: random token ids in [7, V), labels on `spans[row]` = (lo, n)
    (the anchor at lo and n - 1 code positions): every position keeps its token except one
    replaced by its left neighbour's token and one deleted (`<|mask|>`, id 5), and the anchor
    inserts two tokens (its right neighbour's twice, then `<|eos|>`). Rows in `invalid` are
    padding (valid=False)."""
    rows, width = len(spans), model.seq_len
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, model.vocab_size, (rows, width), generator=gen, dtype=torch.int32)
    carry = model.initial_carry(rows, torch.device("cpu"))
    labels = torch.full((rows, width), -100, dtype=torch.int64)
    for row, (lo, n) in enumerate(spans):
        labels[row, lo : lo + n] = ids[row, lo : lo + n].long()
        if n >= 3:
            labels[row, lo + 1] = int(ids[row, lo])  # replaced by its left neighbour
            labels[row, lo + n - 1] = 5  # deleted
        carry.inserts[row, 0, :4] = torch.tensor([lo, int(ids[row, lo + 1]), int(ids[row, lo + 1]), EOS])
    carry.inputs, carry.labels = ids, labels
    carry.valid[:] = True
    for row in invalid:
        carry.valid[row] = False
    carry.halted[:] = False
    return carry


def losses_of(out, **kwargs):
    """`act_losses` of an `ActStepOutput` (q_weight 0.5 unless given)."""
    kwargs.setdefault("q_weight", 0.5)
    return act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue, out.target_q_continue,
                      own_tokens=out.own_tokens, insert_logits=out.insert_logits,
                      insert_labels=out.insert_labels, slot_logits=out.slot_logits,
                      slot_labels=out.slot_labels, slot_rows=out.slot_rows, slot_cols=out.slot_cols,
                      keep_scale=out.keep_scale, **kwargs)
