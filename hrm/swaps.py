"""A swap of two spans as ONE label: the pivot token outputs `<|swap|>`.

A fix that exchanges two spans (the operands of `-`, `<`, `in` ...; two adjacent call arguments;
two adjacent statements: `hrm.rewrites.SWAP_KINDS`) is, as a token alignment, a deletion of one
span and a re-insertion of it elsewhere: several positions change, and the re-inserted tokens
must come from the insertion head, which had them at log-probabilities of -8 to -15 after
training (BENCHMARKS.md "What did not lift": 0 of 45 swapped operands fixed even on trained
rows). Yet the fix is fully determined by WHERE the swap is. So a swap is labelled at one
position, its *pivot*: the token holding the first non-blank character after the first span
(for operands, the operator; for arguments, the comma; for statements, the second one's first
word), which outputs `<|swap|>`; every other position keeps its token.

Applying a pivot (`swap_text`) re-derives the swap from the code: the first swap rewrite of the
decoded segment (`hrm.rewrites`, in its order) whose pivot falls in that token. Labelling
(`swap_pivot`) uses the same rule, so a label applied gives back the fixed code exactly, and a
swap rewrite scored in evaluation (`hrm.eval.rewrite_outputs`) has exactly the label's form.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

from hrm.rewrites import SWAP_KINDS, Rewrite, iter_rewrites


def token_starts(tokenizer, code: Sequence[int], text: str | None = None) -> list[int]:
    """Character offset at which each token of `code` starts in its decoded `text`: from the
    tokenizer's offsets when `code` is how it encodes `text` (code cut from a file always is),
    else by decoding every prefix."""
    text = tokenizer.decode(list(code)) if text is None else text
    ids, starts = tokenizer.encode_with_starts(text)
    if ids == [int(t) for t in code]:
        return starts
    starts, text_len = [], 0
    for i in range(len(code)):
        starts.append(text_len)
        text_len = len(tokenizer.decode(code[: i + 1]))
    return starts


def pivot_index(starts: Sequence[int], char: int) -> int:
    """The index of the token holding character `char` (`starts`: `token_starts`)."""
    return max(bisect.bisect_right(starts, char) - 1, 0)


class Swaps:
    """The swaps of one segment's code by pivot, found on first use (each is parsed once)."""

    def __init__(self, tokenizer, code: Sequence[int], text: str | None = None):
        """`text`: the decoded `code` when the caller has it (saves decoding it again)."""
        self.tokenizer, self.code = tokenizer, [int(t) for t in code]
        self.text = tokenizer.decode(self.code) if text is None else text
        self._by_pivot: dict[int, Rewrite] | None = None

    @property
    def by_pivot(self) -> dict[int, Rewrite]:
        """Pivot token index -> the swap it applies: the first swap (in `hrm.rewrites` order)
        whose pivot falls in that token."""
        if self._by_pivot is None:
            starts = token_starts(self.tokenizer, self.code, self.text)
            self._by_pivot = {}
            for rewrite in iter_rewrites(self.text, kinds=SWAP_KINDS):
                char = rewrite.pivot
                while char < len(self.text) - 1 and self.text[char].isspace():
                    char += 1  # the operator, the comma, the next statement's first word
                self._by_pivot.setdefault(pivot_index(starts, char), rewrite)
        return self._by_pivot

    def pivot_of(self, fixed_text: str) -> int | None:
        """The pivot whose swap gives `fixed_text`; None when no swap does."""
        if fixed_text == self.text or not _same_characters(self.text, fixed_text):
            return None
        return next((i for i, rw in self.by_pivot.items() if rw.text == fixed_text), None)

    def text_at(self, index: int) -> str | None:
        """The code with the swap whose pivot is token `index` applied; None when none is."""
        rewrite = self.by_pivot.get(index)
        return None if rewrite is None else rewrite.text


_BLANKS = str.maketrans("", "", " \t\r\n\f\v")


def _same_characters(a: str, b: str) -> bool:
    """Whether `a` and `b` hold the same characters apart from blanks (any swap's do): checked
    for every region of every training row and epoch, so kept to C-speed string operations."""
    a, b = a.translate(_BLANKS), b.translate(_BLANKS)
    return len(a) == len(b) and Counter(a) == Counter(b)


def swap_pivot(tokenizer, code: Sequence[int], fixed_text: str, buggy_text: str | None = None
               ) -> int | None:
    """The pivot token index when `fixed_text` is a swap of the decoded `code` (`swap_text` of
    it gives `fixed_text` back); None otherwise. `buggy_text`: the decoded `code`, if known."""
    return Swaps(tokenizer, code, buggy_text).pivot_of(fixed_text)


def swap_text(tokenizer, code: Sequence[int], index: int) -> str | None:
    """The decoded `code` with the swap whose pivot is token `index` applied; None when no swap
    has its pivot there."""
    return Swaps(tokenizer, code).text_at(index)
