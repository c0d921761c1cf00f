"""Edit labels aligned with the buggy code: what each buggy token becomes.

The model reads a code segment as tokens b_0 .. b_{n-1} preceded by an *anchor* position (the
last token of the segment's `# file:` header). Each of these n + 1 positions outputs a string of
tokens that replaces it; the fixed code is the concatenation of the outputs, in order:

    keep b_i              position i outputs [b_i]        (every position, by default)
    replace b_i by x      position i outputs [x]
    delete b_i            position i outputs []
    insert x after b_i    position i outputs [b_i, x]     (before b_0: the anchor outputs [x])

So predicting "keep" everywhere reproduces the buggy code, and a fix is a few positions whose
output differs. (A fix that exchanges two spans is labelled at one position instead, its pivot,
which outputs `<|swap|>`: `pivot_targets`, `hrm.swaps`.) Labels per position (`PositionLabels`):

- `first`: the output's first token, `delete_id` for an empty output; the anchor's `first` is
  always its own token (it never replaces the header; it only inserts);
- `rest`: the output's remaining tokens (for the anchor: all of them), up to `slots - 1`, at
  most; an output with a non-empty `rest` is an *insertion*.

`first` is dense (every position has one: its own token when kept), `rest` sparse (insertions
only). An output longer than the position can hold (`slots` tokens; `slots - 1` for the anchor)
is *spread*: it and its neighbours (before it first, then after) form the smallest run whose
outputs fit, and the run's joined output is dealt over it evenly. The run's positions then
differ from their own tokens but nothing outside it does, and the joined output is unchanged, so
`apply_outputs(buggy, encode_edits(buggy, fixed).outputs)` is `fixed` exactly whenever the fix
fits at all; `encode_edits` returns None otherwise.

Outputs come from a token-level alignment of buggy and fixed tokens (difflib, autojunk off): equal
runs keep; a replaced run is paired position by position, its surplus fixed tokens appended to its
last position, its surplus buggy positions deleted; an insertion goes to the position before it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EditTargets:
    """The outputs of one segment: n + 1 positions (anchor first, then each buggy token)."""

    outputs: tuple[tuple[int, ...], ...]
    """Output tokens of every position (the anchor's: what it inserts before the code)."""
    edited: tuple[int, ...]
    """Positions (0 = anchor, i + 1 = buggy token i) whose output is not their own token."""
    spread: bool
    """An output was too long for its position and was dealt over a run of positions."""


@dataclass(frozen=True)
class PositionLabels:
    """One position's labels: its output's first token and the rest (see the module doc)."""

    first: int
    rest: tuple[int, ...]


def capacities(n: int, slots: int) -> list[int]:
    """Output tokens each position can hold: `slots - 1` for the anchor, `slots` otherwise."""
    return [slots - 1] + [slots] * n


def natural_outputs(buggy: Sequence[int], fixed: Sequence[int]) -> list[list[int]]:
    """Per position (anchor first) the output tokens from the alignment, before any spread."""
    outputs: list[list[int]] = [[]] + [[int(t)] for t in buggy]
    matcher = difflib.SequenceMatcher(None, list(buggy), list(fixed), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "replace":
            n_b, n_f = i2 - i1, j2 - j1
            for k in range(n_b):
                outputs[i1 + k + 1] = [int(fixed[j1 + k])] if k < n_f else []
            if n_f > n_b:
                outputs[i2] += [int(t) for t in fixed[j1 + n_b: j2]]
        elif tag == "delete":
            for k in range(i1, i2):
                outputs[k + 1] = []
        elif tag == "insert":
            outputs[i1] += [int(t) for t in fixed[j1:j2]]
    return outputs


def spread(outputs: list[list[int]], caps: Sequence[int]) -> tuple[list[list[int]], bool] | None:
    """Outputs with output k holding at most `caps[k]` tokens: each too-long output is dealt,
    with its neighbours' (before first, then after), over the smallest run that holds them.
    None when all positions together cannot hold them. The flag says whether anything moved."""
    out = [list(o) for o in outputs]
    n = len(out)
    if sum(len(o) for o in out) > sum(caps):
        return None
    moved = False
    i = 0
    while i < n:
        if len(out[i]) <= caps[i]:
            i += 1
            continue
        moved = True
        lo, hi = i, i + 1
        while sum(len(o) for o in out[lo:hi]) > sum(caps[lo:hi]):
            if lo > 0:
                lo -= 1
            else:
                hi += 1
        joined = [t for o in out[lo:hi] for t in o]
        # Deal evenly, never past a position's capacity (the anchor holds one token less).
        sizes = [0] * (hi - lo)
        for _ in range(len(joined)):
            j = min((j for j in range(hi - lo) if sizes[j] < caps[lo + j]),
                    key=lambda j: (sizes[j], -j))
            sizes[j] += 1
        k = 0
        for j, size in enumerate(sizes):
            out[lo + j] = joined[k: k + size]
            k += size
        i = lo
    return out, moved


def encode_edits(buggy: Sequence[int], fixed: Sequence[int], slots: int) -> EditTargets | None:
    """The outputs turning `buggy` into `fixed`, each within its position's capacity, or None
    when the fix is longer than all positions can hold."""
    if slots < 2:
        raise ValueError("slots must be at least 2 (a first token and one inserted token)")
    got = spread(natural_outputs(buggy, fixed), capacities(len(buggy), slots))
    if got is None:
        return None
    final, moved = got
    outputs = tuple(tuple(o) for o in final)
    own = own_outputs(buggy)
    edited = tuple(i for i, out in enumerate(outputs) if out != own[i])
    return EditTargets(outputs, edited, moved)


def pivot_targets(buggy: Sequence[int], index: int, label: int) -> EditTargets:
    """The outputs of a swap labelled at its pivot, token `index` (`hrm.swaps`): that position
    outputs `label` (`<|swap|>`), every other one keeps its token."""
    outputs = own_outputs(buggy)
    outputs[index + 1] = (int(label),)
    return EditTargets(tuple(outputs), (index + 1,), False)


def own_outputs(buggy: Sequence[int]) -> list[tuple[int, ...]]:
    """Each position's output when kept: nothing for the anchor, b_i for position i + 1."""
    return [()] + [(int(t),) for t in buggy]


def position_labels(output: Sequence[int], own: int, *, anchor: bool, delete_id: int
                    ) -> PositionLabels:
    """The labels of one position's output (`own`: the token the position holds)."""
    output = tuple(int(t) for t in output)
    if anchor:
        return PositionLabels(own, output)
    if not output:
        return PositionLabels(delete_id, ())
    return PositionLabels(output[0], output[1:])


def output_of(first: int, rest: Sequence[int], *, anchor: bool, delete_id: int) -> tuple[int, ...]:
    """The inverse of `position_labels`: a position's output from its labels (or prediction)."""
    if anchor:
        return tuple(int(t) for t in rest)
    if first == delete_id:
        return tuple(int(t) for t in rest)
    return (int(first), *(int(t) for t in rest))


def apply_outputs(buggy: Sequence[int], outputs: dict[int, Sequence[int]]) -> list[int]:
    """The tokens after replacing each position in `outputs` (0 = anchor, i + 1 = token i) by
    its output; every other position keeps its own token."""
    out: list[int] = [int(t) for t in outputs.get(0, ())]
    for i, tok in enumerate(buggy):
        if i + 1 in outputs:
            out.extend(int(t) for t in outputs[i + 1])
        else:
            out.append(int(tok))
    return out


def edited_outputs(targets: EditTargets) -> dict[int, tuple[int, ...]]:
    """The edited positions of `targets` in `apply_outputs` form."""
    return {i: targets.outputs[i] for i in targets.edited}


def rest_labels(rest: Sequence[int], slots: int, end_id: int, ignore: int) -> list[int]:
    """The `slots - 1` labels of an insertion: its tokens, then `end` if room, then `ignore`."""
    out = [int(t) for t in rest]
    if len(out) < slots - 1:
        out.append(end_id)
    return out + [ignore] * (slots - 1 - len(out))


def rest_of(slot_ids: Sequence[int], end_id: int) -> tuple[int, ...]:
    """An insertion's tokens from its predicted slots: up to the first `end`."""
    out = []
    for t in slot_ids:
        if int(t) == end_id:
            break
        out.append(int(t))
    return tuple(out)
