"""Edit labels (hrm.edits): the docstring's examples, spreading of long insertions, and a
property test over random token sequences."""

from __future__ import annotations

import random

import pytest

from hrm.edits import (
    PositionLabels,
    apply_outputs,
    capacities,
    edited_outputs,
    encode_edits,
    natural_outputs,
    output_of,
    own_outputs,
    position_labels,
    rest_labels,
    rest_of,
    spread,
)

DELETE, END, IGNORE = 5, 2, -100
B = [11, 12, 13]  # buggy tokens b_0 b_1 b_2: positions 1, 2, 3 (0 is the anchor)


@pytest.mark.parametrize(
    ("fixed", "outputs", "edited"),
    [
        ([11, 12, 13], ((), (11,), (12,), (13,)), ()),  # keep everywhere: the buggy code
        ([11, 99, 13], ((), (11,), (99,), (13,)), (2,)),  # replace b_1 by x
        ([11, 13], ((), (11,), (), (13,)), (2,)),  # delete b_1
        ([11, 12, 99, 13], ((), (11,), (12, 99), (13,)), (2,)),  # insert x after b_1
        ([99, 11, 12, 13], ((99,), (11,), (12,), (13,)), (0,)),  # insert before b_0: the anchor
        ([11, 12, 13, 98, 99], ((), (11,), (12,), (13, 98, 99)), (3,)),  # append at the end
        ([11, 97, 98, 99, 13], ((), (11,), (97, 98, 99), (13,)), (2,)),  # a replaced run grows
        ([97, 13], ((), (97,), (), (13,)), (1, 2)),  # a replaced run shrinks: surplus deleted
    ],
)
def test_docstring_examples(fixed, outputs, edited):
    got = encode_edits(B, fixed, slots=4)
    assert got.outputs == outputs
    assert got.edited == edited
    assert not got.spread
    assert apply_outputs(B, dict(enumerate(got.outputs))) == fixed
    assert apply_outputs(B, edited_outputs(got)) == fixed


def test_labels_per_position():
    # keep: own token; replace: the new token; delete: delete id; insert: first + rest
    assert position_labels((12,), 12, anchor=False, delete_id=DELETE) == PositionLabels(12, ())
    assert position_labels((99,), 12, anchor=False, delete_id=DELETE) == PositionLabels(99, ())
    assert position_labels((), 12, anchor=False, delete_id=DELETE) == PositionLabels(DELETE, ())
    assert position_labels((12, 98, 99), 12, anchor=False, delete_id=DELETE) == PositionLabels(
        12, (98, 99))
    # the anchor never replaces its header token: its first is its own, everything is rest
    assert position_labels((98, 99), 7, anchor=True, delete_id=DELETE) == PositionLabels(
        7, (98, 99))
    assert position_labels((), 7, anchor=True, delete_id=DELETE) == PositionLabels(7, ())
    for output in [(), (12,), (99,), (12, 98, 99), (99, 98)]:
        for anchor in (False, True):
            lab = position_labels(output, 7 if anchor else 12, anchor=anchor, delete_id=DELETE)
            assert output_of(lab.first, lab.rest, anchor=anchor, delete_id=DELETE) == output
    # a deleted position that also inserts (delete id first, then the tokens)
    assert output_of(DELETE, (98,), anchor=False, delete_id=DELETE) == (98,)


def test_insertion_slots_round_trip():
    assert rest_labels([98, 99], 4, END, IGNORE) == [98, 99, END]
    assert rest_labels([97, 98, 99], 4, END, IGNORE) == [97, 98, 99]  # full: no end needed
    assert rest_labels([99], 4, END, IGNORE) == [99, END, IGNORE]
    assert rest_labels([], 3, END, IGNORE) == [END, IGNORE]
    for rest in ([], [99], [98, 99], [97, 98, 99]):
        labels = rest_labels(rest, 4, END, IGNORE)
        assert rest_of([t for t in labels if t != IGNORE], END) == tuple(rest)
    assert rest_of([98, END, 99], END) == (98,)  # tokens after a predicted end are not read


def test_long_insertion_is_spread_over_the_smallest_run():
    buggy = [1, 2, 3, 4, 5]
    fixed = [1, 2, 10, 11, 12, 13, 14, 3, 4, 5]  # five tokens inserted after b_1
    assert natural_outputs(buggy, fixed)[2] == [2, 10, 11, 12, 13, 14]  # 6 > slots 4
    got = encode_edits(buggy, fixed, slots=4)
    assert got.spread
    # the run grows before the long output first: positions 1-2 hold 7 tokens, dealt evenly
    assert got.outputs == ((), (1, 2, 10), (11, 12, 13, 14), (3,), (4,), (5,))
    assert got.edited == (1, 2)
    assert apply_outputs(buggy, edited_outputs(got)) == fixed
    # at the start the run grows after it (the anchor holds one token less)
    got = encode_edits([1, 2], [7, 8, 9, 10, 11, 1, 2], slots=3)
    assert got.spread and got.outputs[0] and all(len(o) <= 3 for o in got.outputs)
    assert len(got.outputs[0]) <= 2
    assert apply_outputs([1, 2], dict(enumerate(got.outputs))) == [7, 8, 9, 10, 11, 1, 2]


def test_none_exactly_when_the_fix_exceeds_all_positions():
    # one buggy token, slots 2: the anchor holds 1, the token 2: at most 3 output tokens
    assert capacities(1, 2) == [1, 2]
    assert encode_edits([1], [4, 5, 6], slots=2) is not None
    assert encode_edits([1], [4, 5, 6, 7], slots=2) is None
    assert encode_edits([], [4, 5, 6], slots=4).outputs == ((4, 5, 6),)
    assert encode_edits([], [4, 5, 6, 7], slots=4) is None
    assert encode_edits([], [], slots=4).outputs == ((),)
    with pytest.raises(ValueError, match="slots must be at least 2"):
        encode_edits([1], [1], slots=1)
    assert spread([[1, 2, 3]], [2]) is None


def _random_fix(rng: random.Random, buggy: list[int]) -> list[int]:
    """A fixed sequence a few edits (or a whole rewrite) away from `buggy`."""
    if rng.random() < 0.1:
        return [rng.randrange(20, 30) for _ in range(rng.randrange(0, 40))]
    fixed = list(buggy)
    for _ in range(rng.randrange(0, 4)):
        at = rng.randrange(0, len(fixed) + 1)
        op = rng.choice(("insert", "delete", "replace"))
        if op == "insert":
            fixed[at:at] = [rng.randrange(20, 30) for _ in range(rng.randrange(1, 15))]
        elif op == "delete":
            del fixed[at: at + rng.randrange(1, 6)]
        else:
            fixed[at: at + rng.randrange(1, 4)] = [rng.randrange(20, 30)
                                                    for _ in range(rng.randrange(1, 6))]
    return fixed


def test_property_random_sequences():
    rng = random.Random(1234)
    spread_seen = none_seen = 0
    for _ in range(4000):
        buggy = [rng.randrange(10, 25) for _ in range(rng.randrange(0, 25))]
        fixed = _random_fix(rng, buggy)
        slots = rng.randrange(2, 6)
        got = encode_edits(buggy, fixed, slots)
        caps = capacities(len(buggy), slots)
        fits = len(fixed) <= sum(caps) == slots * (len(buggy) + 1) - 1
        assert (got is None) == (not fits), (buggy, fixed, slots)
        if got is None:
            none_seen += 1
            continue
        assert len(got.outputs) == len(buggy) + 1
        assert all(len(out) <= cap for out, cap in zip(got.outputs, caps, strict=True))
        assert apply_outputs(buggy, dict(enumerate(got.outputs))) == fixed
        assert apply_outputs(buggy, edited_outputs(got)) == fixed
        own = own_outputs(buggy)
        assert got.edited == tuple(i for i, out in enumerate(got.outputs) if out != own[i])
        natural = natural_outputs(buggy, fixed)
        too_long = [i for i, out in enumerate(natural) if len(out) > caps[i]]
        assert got.spread == bool(too_long)
        if not too_long:
            assert [list(o) for o in got.outputs] == natural
        else:
            spread_seen += 1
            # positions outside the spread runs keep their natural output: every change lies in
            # a contiguous block holding a too-long output, whose joined output is unchanged
            changed = [i for i, (a, b) in enumerate(zip(got.outputs, natural, strict=True))
                       if list(a) != b]
            blocks: list[list[int]] = []
            for i in changed:
                if blocks and i == blocks[-1][-1] + 1:
                    blocks[-1].append(i)
                else:
                    blocks.append([i])
            for block in blocks:
                lo, hi = block[0], block[-1] + 1
                assert any(lo <= i < hi for i in too_long)
                assert [t for o in got.outputs[lo:hi] for t in o] == [
                    t for o in natural[lo:hi] for t in o]
        # the labels of every position give its output back
        for i, out in enumerate(got.outputs):
            anchor = i == 0
            lab = position_labels(out, 7 if anchor else buggy[i - 1], anchor=anchor,
                                  delete_id=DELETE)
            assert len(lab.rest) <= slots - 1
            assert output_of(lab.first, lab.rest, anchor=anchor, delete_id=DELETE) == out
            slots_labels = rest_labels(lab.rest, slots, END, IGNORE)
            assert len(slots_labels) == slots - 1
            assert rest_of([t for t in slots_labels if t != IGNORE], END) == lab.rest
    assert spread_seen > 100 and none_seen > 20  # both paths exercised
