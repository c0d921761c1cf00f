"""Decoding a prediction for evaluation: the segment texts AND the special tokens the model wrote.

A position's output is untrusted model output: an output holding a special token (`<|pad|>`,
`<|hunk|>`, ...) is not code, even where it would decode to something that compiles.
`decode_prediction` returns the texts as a `Decoded` list that also carries `special_tokens`;
the row scorer (`hrm.eval.rows`) fails such a row at every code tier without running its tests,
and the search verifier rejects such a candidate, each with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class Decoded(list):
    """Decoded segment texts (a plain list of str) plus the special tokens the outputs held."""

    def __init__(self, hunks: Iterable[str] = (), special_tokens: Sequence[str] = ()):
        super().__init__(hunks)
        self.special_tokens: tuple[str, ...] = tuple(special_tokens)


def decode_prediction(tokenizer, inputs, segments, outputs: Mapping[int, Sequence[int]]) -> Decoded:
    """The segment texts after `outputs` (`hrm.sequences.decode_segments`), keeping the names of
    special tokens found in them (the mask token only counts where it is not a deletion, i.e.
    never: a deletion is an empty output)."""
    from hrm.sequences import decode_with_swaps, special_tokens_in

    texts, applied = decode_with_swaps(tokenizer, inputs, segments, dict(outputs))
    return Decoded(texts, special_tokens_in(tokenizer, outputs, applied))


def special_tokens_of(hunks: Sequence[str]) -> tuple[str, ...]:
    """The special tokens recorded with decoded texts (none for a plain list)."""
    return tuple(getattr(hunks, "special_tokens", ()))


def special_reason(specials: Sequence[str]) -> str:
    """Why a prediction holding special tokens is not code."""
    counts: dict[str, int] = {}
    for name in specials:
        counts[name] = counts.get(name, 0) + 1
    listed = ", ".join(f"<{n}>" + (f" x{c}" if c > 1 else "") for n, c in counts.items())
    return f"special tokens inside the predicted code ({listed}): not code"
