"""A swap labelled at one position, its pivot (hrm.swaps), through encoding, decoding and the
rewrites evaluation scores."""

from __future__ import annotations

import textwrap

import numpy as np

from hrm.eval.rewrite_outputs import rewrite_outputs
from hrm.regions import bug_regions
from hrm.rewrites import SWAP_KINDS, rewrites
from hrm.sequences import (
    decode_segments,
    decode_with_swaps,
    encode_example,
    label_outputs,
    pack,
    special_tokens_in,
)
from hrm.swaps import Swaps, swap_pivot, swap_text

FIXED = textwrap.dedent('''\
    def spread(lo, hi, items, step):
        width = hi - lo
        size = divmod(width, step)
        if width < size[0]:
            return len(items) - 1
        first = items[0]
        last = items[-1]
        return first, last
    ''')


def _code(tok, text: str) -> list[int]:
    return tok.encode(text)


def test_every_swap_is_labelled_at_its_pivot_and_applied_back(tok):
    code = _code(tok, FIXED)
    swaps = [rw for rw in rewrites(FIXED) if rw.kind in SWAP_KINDS]
    assert {rw.kind for rw in swaps} == set(SWAP_KINDS)
    pivot_text = {}
    for rw in swaps:
        index = swap_pivot(tok, code, rw.text)
        assert index is not None, rw
        assert swap_text(tok, code, index) == rw.text
        pivot_text[rw.text] = (rw.kind, tok.decode([code[index]]))
    by_kind = {}
    for kind, token in pivot_text.values():
        by_kind.setdefault(kind, set()).add(token.strip())
    # operands at their operator, arguments at their comma, statements at the second one's line
    assert by_kind["operands"] >= {"-", "<"}
    assert by_kind["arguments"] == {","}
    assert all(not t or t.isidentifier() for t in by_kind["statements"]), by_kind["statements"]
    assert swap_pivot(tok, code, FIXED) is None  # no change is no swap
    assert swap_pivot(tok, code, FIXED.replace("hi - lo", "hi + lo")) is None  # not a swap


def test_no_swap_at_a_token_that_is_no_pivot(tok):
    code = _code(tok, FIXED)
    pivots = Swaps(tok, code).by_pivot
    others = [i for i in range(len(code)) if i not in pivots]
    assert others and all(swap_text(tok, code, i) is None for i in others)


def _row(tok, budgets, buggy_unit: str):
    (region,) = bug_regions("pkg/m.py", FIXED, buggy_unit)
    enc = encode_example(tok, "`spread` misbehaves", [region], budgets["roomy"])
    assert not isinstance(enc, str), enc
    inputs, labels, inserts = pack([enc], budgets["roomy"], tok.pad_id)
    return enc, inputs[0], labels[0], inserts[0]


def test_a_swapped_fix_is_one_label_and_decodes_exactly(tok, budgets):
    buggy = FIXED.replace("width = hi - lo", "width = lo - hi")
    enc, inputs, labels, inserts = _row(tok, budgets, buggy)
    outputs = label_outputs(inputs, labels, inserts, enc.segments, delete_id=tok.mask_id,
                            end_id=tok.eos_id)
    assert len(outputs) == 1 and enc.edited == 1
    ((pos, out),) = outputs.items()
    assert out == (tok.swap_id,) and tok.decode([int(inputs[pos])]).strip() == "-"
    assert int(np.sum(labels == tok.swap_id)) == 1
    assert decode_segments(tok, inputs, enc.segments, outputs) == [FIXED]
    texts, applied = decode_with_swaps(tok, inputs, enc.segments, outputs)
    assert texts == [FIXED] and applied == {pos}
    assert special_tokens_in(tok, outputs, applied) == []
    # the rewrites evaluation scores hold the fix in exactly the label's form
    assert ("operands", outputs) in rewrite_outputs(tok, inputs, enc.segments, budgets["roomy"].slots)


def test_a_misplaced_or_mixed_swap_marker_is_not_code(tok, budgets):
    buggy = FIXED.replace("width = hi - lo", "width = lo - hi")
    enc, inputs, labels, inserts = _row(tok, budgets, buggy)
    anchor, n = enc.segments[0]
    (pivot,) = np.flatnonzero(labels == tok.swap_id).tolist()
    not_pivot = anchor + 1  # `def`: no swap there
    wrong = {not_pivot: (tok.swap_id,)}
    (text,) = decode_segments(tok, inputs, enc.segments, wrong)
    assert "<|swap|>" in text
    assert decode_with_swaps(tok, inputs, enc.segments, wrong)[1] == set()
    assert special_tokens_in(tok, wrong, set()) == ["swap"]
    mixed = {pivot: (tok.swap_id,), anchor + n: ()}  # the swap and a deletion in one segment
    texts, applied = decode_with_swaps(tok, inputs, enc.segments, mixed)
    assert applied == set() and special_tokens_in(tok, mixed, applied) == ["swap"]
    assert "<|swap|>" in decode_segments(tok, inputs, enc.segments, mixed)[0]
    # a marker not known to be applied counts
    assert special_tokens_in(tok, {pivot: (tok.swap_id,)}) == ["swap"]


def test_non_swap_fixes_keep_the_aligned_form(tok, budgets):
    buggy = FIXED.replace("width = hi - lo", "width = hi + lo")
    enc, inputs, labels, inserts = _row(tok, budgets, buggy)
    assert not np.any(labels == tok.swap_id)
    outputs = label_outputs(inputs, labels, inserts, enc.segments, delete_id=tok.mask_id,
                            end_id=tok.eos_id)
    assert decode_segments(tok, inputs, enc.segments, outputs) == [FIXED]
