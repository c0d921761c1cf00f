"""Special tokens inside a predicted output are not code: `decode_prediction` records them beside
the decoded texts, and a row holding any fails every code tier, is never run and never passes
the search verifier, even where its text would compile (a special token inside a comment)."""

from __future__ import annotations

from hrm.eval.decoding import Decoded, decode_prediction
from hrm.eval.rows import RowScorer
from hrm.eval.search import verify
from hrm.sequences import decode_segments

from .conftest import WEIGHTS, concat, reference_outputs


def test_decode_prediction_reports_specials_in_outputs(env_split, tok):
    inputs, segments = env_split.inputs[0], env_split.records[0].segments
    anchor, n = segments[0]
    first, second = anchor + 1, anchor + 2
    own = int(inputs[first])
    cases = [
        ({}, ()),
        ({first: ()}, ()),                                   # a deletion: an empty output
        ({first: (own, own)}, ()),
        ({first: (tok.mask_id,)}, ("mask",)),                # the delete label as a token
        ({first: (own, tok.pad_id)}, ("pad",)),
        ({anchor: (tok.hunk_id,), second: (tok.eos_id,)}, ("hunk", "eos")),
        ({first: (tok.bos_id, tok.sep_id, tok.unk_id)}, ("bos", "sep", "unk")),
    ]
    for outputs, want in cases:
        got = decode_prediction(tok, inputs, segments, outputs)
        assert isinstance(got, Decoded) and got.special_tokens == want, outputs
        assert list(got) == decode_segments(tok, inputs, segments, outputs)
    assert list(decode_prediction(tok, inputs, segments, {})) == [
        h.buggy_text for h in env_split.records[0].hunks]


def test_references_hold_no_special_tokens(splits, tok):
    for split in splits.values():
        for i in range(len(split)):
            ref = reference_outputs(split, i, tok)
            assert decode_prediction(tok, split.inputs[i], split.records[i].segments,
                                     ref).special_tokens == ()


def _comment_mask(split, i, tok):
    """The reference with `<|mask|>` inserted after a comment token of the region: its text
    compiles and has the reference's AST, but the model wrote a special token."""
    ref = reference_outputs(split, i, tok)
    anchors = {a for a, _n in split.records[i].segments}
    for anchor, n in split.records[i].segments:
        for pos in range(anchor + 1, anchor + n + 1):
            own = int(split.inputs[i][pos])
            if pos not in ref and pos not in anchors and "#" in tok.decode([own]):
                return ref, {**ref, pos: (own, tok.mask_id)}
    return ref, None


def test_a_prediction_with_special_tokens_fails_every_tier_and_is_never_run(
        env_split, generated, tok, tenacity_scorer):
    env_split = concat([env_split, generated[1]])
    scored = 0
    for i, rec in enumerate(env_split.records):
        ref, pred = _comment_mask(env_split, i, tok)
        if pred is None:
            continue
        refs = [h.fixed_text for h in rec.hunks]
        hunks = decode_prediction(tok, env_split.inputs[i], rec.segments, pred)
        assert hunks.special_tokens == ("mask",) and list(hunks) != refs
        # as plain text (the special dropped from the record) it would compile and match
        plain = RowScorer(WEIGHTS, None, True).score(rec, pred, ref, list(hunks), refs)
        assert plain.code.compiles is True and plain.code.ast_match is True
        row = tenacity_scorer.score(rec, pred, ref, hunks, refs)
        assert row.has_env and row.code.context == "file"
        assert row.code.compiles is False and row.code.ast_match is False
        assert row.tier == 0 and row.tier_score == 0.0 and not row.exact
        assert row.resolved is False and row.test_outcomes == {}
        assert row.test_reason.startswith("not run: special tokens inside the predicted code")
        assert "<mask>" in row.code.reason and row.to_json()["special_tokens"] == ["mask"]
        buggy = [h.buggy_text for h in rec.hunks]
        verdict = verify(tenacity_scorer.context(rec), hunks, tenacity_scorer, buggy)
        assert not verdict.passes and "<mask>" in verdict.reason
        frag = verify("no environment", hunks, RowScorer(WEIGHTS, None, True), buggy)
        assert not frag.passes and "special tokens" in frag.reason
        scored += 1
    assert scored >= 2
