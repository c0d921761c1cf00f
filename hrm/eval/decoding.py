"""Decoding a prediction for evaluation: the hunk texts AND the special tokens the model wrote
inside its target region.

`hrm.sequences.decode_target` skips special tokens (they carry no text), so a prediction such
as `return <mask>` would decode to `return ` and might compile. Evaluation must not score what
the model did not write: `decode_prediction` returns the hunks as a `Decoded` list that also
carries `special_tokens`; the row scorer (`hrm.eval.rows`) fails such a row at every code tier
and does not run its tests, and the search verifier rejects such a candidate, each with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class Decoded(list):
    """Decoded hunk texts (a plain list of str) plus the special tokens met inside the target."""

    def __init__(self, hunks: Iterable[str] = (), special_tokens: Sequence[str] = ()):
        super().__init__(hunks)
        self.special_tokens: tuple[str, ...] = tuple(special_tokens)


def decode_prediction(tokenizer, target_ids: Iterable[int]) -> Decoded:
    """`decode_target` of the target region, keeping the special tokens found inside it."""
    from hrm.sequences import decode_target

    found: list[str] = []
    hunks = decode_target(tokenizer, target_ids, specials_out=found)
    return Decoded(hunks, found)


def special_tokens_of(hunks: Sequence[str]) -> tuple[str, ...]:
    """The special tokens recorded with decoded hunks (none for a plain list)."""
    return tuple(getattr(hunks, "special_tokens", ()))


def special_reason(specials: Sequence[str]) -> str:
    """Why a prediction with special tokens inside its target is not code."""
    counts: dict[str, int] = {}
    for name in specials:
        counts[name] = counts.get(name, 0) + 1
    listed = ", ".join(f"<{n}>" + (f" x{c}" if c > 1 else "") for n, c in counts.items())
    return f"special tokens inside the predicted target ({listed}): not code"
