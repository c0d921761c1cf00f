"""The SWE-search verifier and the model's candidates: the verifier never reads the reference
(with an environment it runs the instance's tests on the candidate spliced into its buggy
file; without one it compiles the candidate where the BUGGY region compiles); the candidates an
untrained model proposes on the real sample are distinct, ranked, never the buggy code, and its
greedy fix comes first."""

from __future__ import annotations

import pytest

from hrm.config import SearchConfig
from hrm.eval.rows import RowScorer
from hrm.eval.search import search_row, verify

from .conftest import WEIGHTS, decode


def test_no_env_verifier_compiles_under_the_buggy_regions_wrapper():
    """Without an environment the wrapper comes from the BUGGY region: a method-body line moved
    to column 0 compiles on its own but not where the buggy region sits."""
    scorer = RowScorer(WEIGHTS, None, run_tests=True)
    buggy = ["        x = 2\n"]
    ok = verify("no env", ["        x = 1\n"], scorer, buggy)
    assert ok.passes and ok.verifier == "static"
    assert not verify("no env", ["x = 1\n"], scorer, buggy).passes
    same = verify("no env", buggy, scorer, buggy)
    assert not same.passes and same.reason.startswith("unchanged")
    # a buggy region that compiles nowhere: the candidate's own wrapper, and the reason says so
    v = verify("no env", ["x = 1\n"], scorer, ["x = (\n"])
    assert v.passes and "candidate's own wrapper" in v.reason


def test_env_verifier_never_reads_the_reference(tenacity_env, instances):
    """The reference text in the row context is replaced by garbage: the verifier's compile
    check (the candidate in its buggy file) and its order-dependence excuse (a baseline run of
    the ORIGINAL repository) still pass the real fix; the metrics' excuse names the reference.
    The buggy code itself is never run: it is not a candidate."""
    from dataclasses import replace

    from hrm.eval.execution import ExecutionTier
    from hrm.hunks import parse_patch

    _env, cfg = tenacity_env
    inst = next(i for i in instances
                if i.instance_id == "jd__tenacity.0d40e76f.func_pm_ctrl_shuffle__3ljvivv1")
    tier = ExecutionTier(cfg, {inst.instance_id: inst}, 3)
    scorer = RowScorer(WEIGHTS, tier, run_tests=True)
    hunks = parse_patch(inst.patch, source=inst.instance_id)
    ctx = tier.context(inst.instance_id, inst.repo, hunks)
    fix = [h.fixed_text for h in hunks]
    buggy = [h.buggy_text for h in hunks]
    blind = replace(ctx, hunks=[replace(h, fixed_text="@@ not python (\n") for h in ctx.hunks])
    v = verify(blind, fix, scorer, buggy)
    assert v.passes and v.verifier == "tests", v.reason
    assert "original repository" in v.reason and "test_reraise" in v.reason
    assert "reference fix" in tier.run(ctx, fix).reason  # the metrics may use the reference
    copy = verify(blind, buggy, scorer, buggy)
    assert not copy.passes and copy.reason.startswith("unchanged")
    broken = verify(blind, ["def (\n" + f for f in fix], scorer, buggy)
    assert not broken.passes and "does not compile" in broken.reason
    # tests disabled: the same environment gives the static verdict (compiles in its file)
    static = verify(blind, fix, RowScorer(WEIGHTS, tier, run_tests=False), buggy)
    assert static.passes and static.verifier == "static" and "tests disabled" in static.reason


def test_search_row_needs_a_candidate_and_respects_its_budget():
    from hrm.eval.search import Verdict

    cfg = SearchConfig(candidates_per_iteration=3, max_iterations=2)
    with pytest.raises(ValueError):
        search_row([], lambda o: [], lambda h: Verdict(False, "static", ""), cfg)
    seen = []

    def check(hunks):
        seen.append(hunks[0])
        return Verdict(False, "static", "no")

    cands = [{1: (k,)} for k in range(20)]
    oc = search_row(cands, lambda o: [str(o[1][0])], check, cfg)
    assert seen == [str(k) for k in range(7)]  # 1 greedy + 2 iterations x 3
    assert (oc.candidates, oc.iterations, oc.best_rank) == (7, 2, 0)
    assert not oc.best_passes and not oc.converged and oc.best_outputs == cands[0]
    found = search_row(cands, lambda o: [str(o[1][0])],
                       lambda h: Verdict(h == ["4"], "static", ""), cfg)
    # candidate 4 is in the second iteration (candidates 4..6): found before the budget ran out
    # but in the last iteration, so not converged
    assert (found.best_rank, found.candidates, found.iterations) == (4, 5, 2)
    assert found.best_passes and not found.converged
    # patience: found at iteration 1 of 3 converges with patience 1 and 2, not 3 (refused: it
    # must stay below max_iterations); the greedy fix (iteration 0) converges with any patience
    wide = SearchConfig(candidates_per_iteration=3, max_iterations=3)
    check4 = lambda h: Verdict(h == ["2"], "static", "")  # noqa: E731
    for patience, converged in ((1, True), (2, True)):
        oc = search_row(cands, lambda o: [str(o[1][0])], check4, wide.model_copy(update={"patience": patience}))
        assert (oc.iterations, oc.converged) == (1, converged)
    late = search_row(cands, lambda o: [str(o[1][0])], lambda h: Verdict(h == ["5"], "static", ""),
                      SearchConfig(candidates_per_iteration=3, max_iterations=3, patience=2))
    assert late.iterations == 2 and late.best_passes and not late.converged
    greedy = search_row(cands, lambda o: [str(o[1][0])], lambda h: Verdict(h == ["0"], "static", ""),
                        SearchConfig(candidates_per_iteration=3, max_iterations=3, patience=2))
    assert greedy.iterations == 0 and greedy.converged
    with pytest.raises(ValueError, match="patience"):
        SearchConfig(max_iterations=3, patience=3)


@pytest.fixture(scope="module")
def untrained(splits, tok, eval_params):
    """Proposals of an untrained model (the train seed) on every row of every split."""
    import torch

    from hrm.eval.proposals import propose
    from hrm.model import build_model

    meta = splits["val"].meta
    torch.manual_seed(eval_params.train.seed)
    model = build_model(eval_params.model, meta.vocab_size, meta.seq_len, "cpu", meta.slots,
                        meta.max_insertions)
    search = eval_params.eval.search
    out = []
    for split in splits.values():
        anchors = [[a for a, _n in r.segments] for r in split.records]
        props = propose(model, split.inputs, split.labels, anchors, end_id=tok.eos_id,
                        delete_id=tok.mask_id, ignore_index=meta.ignore_index,
                        positions=search.positions, alternatives=search.alternatives,
                        batch_size=16)
        out += [(split, i, p) for i, p in enumerate(props)]
    return out


def test_untrained_candidates_are_distinct_ranked_and_greedy_first(untrained, tok, eval_params):
    search = eval_params.eval.search
    budget = 1 + search.max_iterations * search.candidates_per_iteration
    assert len(untrained) >= 30
    for split, i, prop in untrained:
        buggy = [h.buggy_text for h in split.records[i].hunks]
        cands = prop.candidates(budget)
        assert len(cands) == budget
        logps = [lp for _c, lp in cands]
        assert logps == sorted(logps, reverse=True)
        # every candidate changes something, no two are the same edit or the same code, and
        # none is the buggy code; the one exception: two byte tokens that are not whole UTF-8
        # characters both decode to U+FFFD (such code is garbage the verifier never passes)
        texts = [tuple(decode(split, i, tok, c)) for c, _lp in cands]
        assert all(c for c, _lp in cands)
        assert len({tuple(sorted(c.items())) for c, _lp in cands}) == budget
        same_code = {t for t in texts if texts.count(t) > 1}
        assert all("\ufffd" in "".join(t) for t in same_code), same_code
        assert tuple(buggy) not in texts
        # copy bias: an untrained model keeps every position, so its greedy fix is the single
        # cheapest change (min_edits), which is also its best candidate
        assert all(opts[0].keep for opts in prop.options.values())
        assert len(prop.greedy()) == 1 and cands[0][0] == prop.greedy()
        # ranking: positions by change probability, `positions` of them
        assert len(prop.rank) == min(search.positions, sum(n + 1 for _a, n in
                                                           split.records[i].segments))
        probs = [prop.change_prob[p] for p in prop.rank]
        assert probs == sorted(probs, reverse=True)
