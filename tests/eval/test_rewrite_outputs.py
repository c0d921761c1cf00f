"""Rewrites in output form (`hrm.eval.rewrite_outputs`) and their scores in the proposals
(`hrm.eval.proposals`): on the real sample's rows and the generated tenacity bugs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm.eval.proposals import propose
from hrm.eval.rewrite_outputs import rewrite_outputs, split_rewrites
from tests.eval.conftest import decode, reference_outputs


def _rows(splits, generated):
    for name, split in [*splits.items(), ("generated", generated[1])]:
        for i in range(len(split)):
            yield name, split, i


def test_a_rewrite_equal_to_the_fix_has_exactly_the_reference_outputs(splits, generated, tok):
    """The alignment that made the training labels makes the rewrites' outputs: a rewrite that
    reads as the reference fix IS the reference, position by position."""
    found = []
    for name, split, i in _rows(splits, generated):
        ref = reference_outputs(split, i, tok)
        ref_texts = [h.fixed_text for h in split.records[i].hunks]
        for kind, outputs in rewrite_outputs(tok, split.inputs[i], split.records[i].segments,
                                             split.meta.slots):
            assert outputs and all(outputs[p] != (int(split.inputs[i][p]),) for p in outputs)
            if list(decode(split, i, tok, outputs)) == ref_texts:
                assert outputs == ref, (name, split.records[i].instance_id)
                found.append((split.records[i].kind, kind))
    kinds = {k for k, _ in found}
    assert {"func_pm_op_change", "func_pm_op_flip_cmp", "func_basic"} <= kinds, found
    assert len(found) >= 7, found  # 5 of the sample's real func_basic bugs are one rewrite away


@pytest.fixture(scope="module")
def untrained(eval_params, built, tok):
    from hrm.model import build_model

    torch.manual_seed(0)
    meta = __import__("json").loads((built / "seq" / "meta.json").read_text())
    return build_model(eval_params.model, tok.vocab_size, meta["seq_len"], torch.device("cpu"),
                       meta["slots"], meta["max_insertions"]).eval()


def test_greedy_is_the_best_scored_rewrite_and_search_tries_rewrites_first(untrained, splits, tok):
    split = splits["train"]
    rewrites = split_rewrites(tok, split, split.meta.slots)
    anchors = [[s[0] for s in r.segments] for r in split.records]
    kw = dict(end_id=tok.eos_id, delete_id=tok.mask_id, ignore_index=split.meta.ignore_index,
              positions=16, alternatives=3, batch_size=8)
    with_rw = propose(untrained, split.inputs, split.labels, anchors, rewrites=rewrites, **kw)
    plain = propose(untrained, split.inputs, split.labels, anchors, **kw)
    rows = [i for i, r in enumerate(rewrites) if r]
    assert len(rows) >= len(split) // 2
    for i in rows:
        prop = with_rw[i]
        assert len(prop.rewrites) == len(rewrites[i])
        gains = [g for g, _, _ in prop.rewrites]
        assert gains == sorted(gains, reverse=True)
        assert prop.greedy() == prop.rewrites[0][2]
        cands = [c for c, _ in prop.candidates(13)]
        n_rw = min(13, len(prop.rewrites))
        assert cands[:n_rw] == [dict(o) for _, _, o in prop.rewrites][:n_rw]
        assert len({tuple(sorted(c.items())) for c in cands}) == len(cands)
        # the same options as without rewrites: scoring them changes nothing else
        assert prop.options == plain[i].options and prop.rank == plain[i].rank
    for i in set(range(len(split))) - set(rows):
        assert with_rw[i].greedy() == plain[i].greedy()


def test_a_one_position_rewrite_scores_as_the_same_single_edit(untrained, splits, tok):
    """One rule for both: a rewrite that replaces one token has the gain `single_edits` gives
    that replacement when it is among the position's options."""
    split = splits["train"]
    rewrites = split_rewrites(tok, split, split.meta.slots)
    anchors = [[s[0] for s in r.segments] for r in split.records]
    props = propose(untrained, split.inputs, split.labels, anchors, rewrites=rewrites,
                    end_id=tok.eos_id, delete_id=tok.mask_id, ignore_index=split.meta.ignore_index,
                    positions=64, alternatives=tok.vocab_size, batch_size=8)
    compared = 0
    for prop in props:
        singles = {(pos, out): gain for gain, pos, out in prop.single_edits()}
        for gain, _kind, outputs in prop.rewrites:
            if len(outputs) == 1:
                (pos, out), = outputs.items()
                if (pos, out) in singles:
                    assert gain == pytest.approx(singles[(pos, out)], abs=1e-4)
                    compared += 1
    assert compared >= 20


def test_no_rewrites_for_code_that_does_not_parse(tok):
    ids = tok.encode("def f(:\n    return a - b\n")
    inputs = np.array([tok.bos_id, 9, *ids], dtype=np.int32)
    assert rewrite_outputs(tok, inputs, [[1, len(ids)]], 4) == []
    ids = tok.encode("def f(a, b):\n    return a - b\n")
    inputs = np.array([tok.bos_id, 9, *ids], dtype=np.int32)
    got = rewrite_outputs(tok, inputs, [[1, len(ids)]], 4)
    assert ("operands", ) == tuple({k for k, _ in got} & {"operands"})
    assert all(min(o) >= 1 and max(o) <= 1 + len(ids) for _, o in got)
