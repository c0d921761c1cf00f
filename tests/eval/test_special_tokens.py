"""Special tokens inside a predicted target: `decode_target` skips them (no text), so a
prediction `return <mask>` would decode to `return ` and could compile. Evaluation decodes
with `decode_prediction`, which records them, and fails such a row at every code tier."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hrm.eval.decoding import Decoded, decode_prediction
from hrm.eval.rows import RowScorer
from hrm.eval.search import verify
from hrm.sequences import decode_target

WEIGHTS = [0.1, 0.2, 0.3, 0.4]


@pytest.fixture(scope="module")
def tok(built):
    from hrm.tokenizer import load_tokenizer

    return load_tokenizer(built / "tok")


def test_decode_prediction_reports_specials_inside_the_target(tok):
    a, b = tok.encode("x = 1\n"), tok.encode("y = 2\n")
    eos, pad, mask, hunk = tok.eos_id, tok.pad_id, tok.mask_id, tok.hunk_id
    cases = [
        (a + [eos], ()),
        (a + [hunk] + b + [eos], ()),
        (a + [eos] + [mask, pad] + b, ()),          # after the end: not part of the target
        (a + [pad] * 5, ()),                        # no eos: trailing pad is the end
        (a + [mask] + [eos], ("mask",)),
        (a[:1] + [mask] + a[1:] + [eos], ("mask",)),
        (a + [pad] + b + [eos], ("pad",)),
        (a + [pad, pad, eos], ("pad", "pad")),      # pad before the end token: inside
        (a + [mask] + [pad] * 3, ("mask",)),
        ([tok.bos_id, tok.sep_id, tok.unk_id] + a + [eos], ("bos", "sep", "unk")),
    ]
    for ids, want in cases:
        got = decode_prediction(tok, ids)
        assert isinstance(got, Decoded) and got.special_tokens == want, (ids, got.special_tokens)
        assert list(got) == decode_target(tok, ids)  # the text is decode_target's
    # decode_target itself is unchanged without the flag
    assert decode_target(tok, a + [mask, eos]) == ["x = 1\n"]
    found: list[str] = []
    decode_target(tok, a + [mask, eos], specials_out=found)
    assert found == ["mask"]


def test_references_hold_no_special_tokens(built, tok):
    from hrm.sequences import load_split

    for split in ("train", "val", "test"):
        data = load_split(built / "seq", split)
        start = data.meta.prompt_len
        for row in data.labels:
            assert decode_prediction(tok, row[start:]).special_tokens == ()


def _masked(tok, ref: str) -> tuple[list[int], Decoded]:
    """The reference's tokens with a mask in the middle: decodes to exactly the reference."""
    ids = tok.encode(ref)
    ids = ids[: len(ids) // 2] + [tok.mask_id] + ids[len(ids) // 2:] + [tok.eos_id]
    return ids, decode_prediction(tok, ids)


def test_a_masked_prediction_fails_every_code_tier(tok, sample_hunks):
    """Dropping the mask would make the prediction the reference itself (AST match); recorded,
    it fails syntax, compile and AST match, with the reason."""
    scorer = RowScorer(WEIGHTS, None, run_tests=True)
    labels = np.array([-100, 7, 2])
    scored = 0
    for inst, hunks in sample_hunks:
        refs = [h.fixed_text for h in hunks]
        if len(refs) != 1 or not refs[0].strip():
            continue
        rec = SimpleNamespace(instance_id=inst.instance_id, repo=inst.repo, hunks=hunks,
                              target_truncated=False)
        _ids, pred = _masked(tok, refs[0])
        assert list(pred) == refs and pred.special_tokens == ("mask",)
        plain = scorer.score(rec, labels, labels, -100, [7, 2], list(pred), refs)
        if plain.code.excluded:
            continue
        assert plain.code.ast_match is True  # what skipping the mask would have reported
        row = scorer.score(rec, labels, labels, -100, [7, 2], pred, refs)
        assert row.code.compiles is False and row.code.ast_match is False
        assert row.code.syntax in (False, None) and row.tier == 0 and row.tier_score == 0.0
        assert "<mask>" in row.code.reason and row.special_tokens == ["mask"]
        assert row.to_json()["special_tokens"] == ["mask"]
        scored += 1
    assert scored >= 20


def test_a_masked_prediction_is_not_run_nor_verified(tok, tenacity_scorer, tenacity_rows):
    inst, rec = tenacity_rows[0]
    refs = [h.fixed_text for h in rec.hunks]
    pred = Decoded(refs, ["mask"])  # the reference text, with a mask the decoder dropped
    labels = np.array([-100, 7, 2])
    row = tenacity_scorer.score(rec, labels, labels, -100, [7, 2], pred, refs)
    assert row.has_env and row.code.context == "file" and row.code.compiles is False
    assert row.resolved is False and row.test_outcomes == {}
    assert row.test_reason.startswith("not run: special tokens inside the predicted target")
    verdict = verify(tenacity_scorer.context(rec), pred, 5.0, tenacity_scorer,
                     [h.buggy_text for h in rec.hunks])
    assert verdict.passes is False and "<mask>" in verdict.reason
    # without an environment the fragment verifier rejects it too
    frag = verify("no environment", pred, 5.0, RowScorer(WEIGHTS, None, True),
                  [h.buggy_text for h in rec.hunks])
    assert frag.passes is False and "special tokens" in frag.reason
    del inst
