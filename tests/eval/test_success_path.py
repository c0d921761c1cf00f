"""The success path of SWE-search with REAL test runs: proposals built by hand with known
options on real tenacity rows (the model's greedy fix and its ranked alternatives), searched by
`search_row` exactly as `evaluate_loaded` does it, each candidate checked by the `tests`
verifier in the sandbox (which never reads the reference)."""

from __future__ import annotations

import pytest

from hrm.config import SearchConfig
from hrm.eval.proposals import Option, RowProposal
from hrm.eval.search import search_metrics, search_row, verify

from .conftest import decode, reference_outputs

CFG = SearchConfig(candidates_per_iteration=2, max_iterations=2, positions=16, alternatives=3)


def _proposal(ref: dict, inputs, anchors: set[int], wrong_at: int | None, wrong: tuple
              ) -> RowProposal:
    """Options at the reference's positions: the reference output first (keep far behind),
    except at `wrong_at`, where a wrong output comes first and the reference output second."""
    options, change = {}, {}
    for pos, out in ref.items():
        keep = Option(() if pos in anchors else (int(inputs[pos]),), -6.0, True)
        opts = [Option(out, -0.01, False), keep]
        if pos == wrong_at:
            opts = [Option(wrong, -0.1, False), Option(out, -0.5, False), keep]
        options[pos], change[pos] = opts, 0.99
    return RowProposal(options, change, q_halt=0.0, rank=list(options))


def _candidates(prop: RowProposal, cfg: SearchConfig, max_edits: int | None) -> list[dict]:
    """The search's candidate list, built as `evaluate_loaded` builds it."""
    greedy = prop.greedy(max_edits)
    budget = 1 + cfg.max_iterations * cfg.candidates_per_iteration
    return [greedy] + [c for c, _ in prop.candidates(budget, max_edits) if c != greedy]


# These rows' fixes change two positions (the operator's tokens), so most tests run the
# multi-edit decoding (`eval.max_edits: null`); the default one-edit decoding has its own test.
def _search(data, i, tok, scorer, prop, cfg=CFG, verdicts=None, max_edits=None):
    rec = data.records[i]
    ctx = scorer.context(rec)
    buggy = [h.buggy_text for h in rec.hunks]
    verdicts = [] if verdicts is None else verdicts

    def check(hunks):
        verdicts.append(verify(ctx, hunks, scorer, buggy))
        return verdicts[-1]

    return search_row(_candidates(prop, cfg, max_edits), lambda outs: decode(data, i, tok, outs), check,
                      cfg)


@pytest.fixture(scope="module")
def data(generated):
    return generated[1]


@pytest.fixture(scope="module")
def rows(data, tok):
    """The generated operator bugs by kind: (row index, reference outputs, anchors, the
    position of the operator's fix, a wrong operator there that compiles). The op_change fix
    turns `n + 1` back into `n - 1`; the wrong `n * 1` compiles and its tests fail. The
    op_flip_cmp fix turns `other != 0` back into `other == 0`; the wrong `other <= 0` compiles
    and behaves the same on everything the tests call."""
    out = {}
    for i, rec in enumerate(data.records):
        if rec.kind not in ("func_pm_op_change", "func_pm_op_flip_cmp"):
            continue
        ref = reference_outputs(data, i, tok)
        pos, fix = next((p, o) for p, o in ref.items() if len(o) == 1
                        and tok.decode(list(o)).strip() in ("-", "="))
        wrong = tuple(tok.encode(tok.decode(list(fix)).replace("-", "*").replace("=", "<")))
        assert 1 <= len(wrong) <= data.meta.slots and wrong != fix
        out[rec.kind] = (i, ref, {a for a, _n in rec.segments}, pos, wrong)
    assert len(out) == 2
    return out


def test_greedy_fix_passes_at_once(data, tok, tenacity_scorer, rows):
    outcomes, exact = [], []
    for i, ref, anchors, _pos, _wrong in rows.values():
        prop = _proposal(ref, data.inputs[i], anchors, None, ())
        assert prop.greedy(None) == ref
        oc = _search(data, i, tok, tenacity_scorer, prop)
        assert oc.greedy_passes and oc.best_passes and oc.verifier == "tests"
        assert (oc.candidates, oc.iterations, oc.best_rank, oc.converged) == (1, 0, 0, True)
        outcomes.append(oc)
        exact.append(oc.best_hunks == [h.fixed_text for h in data.records[i].hunks])
    m = search_metrics(outcomes, exact, 3)
    assert m["greedy_pass_rate"] == m["swe_search_score"] == m["resolved_after_search"] == 1.0
    assert m["resolved_within"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert m["exact_after_search"] == 1.0 and m["swe_search_efficiency"] == 0.0
    assert m["swe_search_convergence_rate"] == 1.0 and m["swe_search_candidates"] == 1.0


def test_search_finds_the_fix_at_the_models_second_candidate(data, tok, tenacity_scorer, rows):
    i, ref, anchors, pos, wrong = rows["func_pm_op_change"]
    prop = _proposal(ref, data.inputs[i], anchors, pos, wrong)
    cands = _candidates(prop, CFG, None)
    assert cands[0] == prop.greedy(None) == {**ref, pos: wrong}
    assert cands[1] == ref  # the fix is the model's second candidate
    assert len({tuple(sorted(c.items())) for c in cands}) == len(cands) == 1 + 2 * 2
    verdicts = []
    oc = _search(data, i, tok, tenacity_scorer, prop, verdicts=verdicts)
    # the greedy fix compiles in its file; its tests fail; the second candidate passes them
    assert "tests not passing" in verdicts[0].reason and verdicts[1].passes
    assert not oc.greedy_passes and oc.best_passes
    assert (oc.best_rank, oc.candidates, oc.iterations, oc.converged) == (1, 2, 1, True)
    refs = [h.fixed_text for h in data.records[i].hunks]
    assert oc.best_hunks == refs and oc.best_outputs == ref
    m = search_metrics([oc], [oc.best_hunks == refs], 5)
    assert m["greedy_pass_rate"] == 0.0
    # found at rank 1: not within the first candidate, within the first two onwards
    assert m["resolved_within"] == {"1": 0.0, "2": 1.0, "3": 1.0, "4": 1.0, "5": 1.0}
    assert m["swe_search_score"] == m["resolved_after_search"] == m["exact_after_search"] == 1.0
    assert m["swe_search_candidates"] == 2.0 and m["swe_search_iterations"] == 1.0
    assert m["swe_search_efficiency"] == pytest.approx(0.5)  # (1 - 0) / 2 candidates

    # one candidate per iteration, three iterations, patience 2 (the cpu profile's): found at
    # iteration 1, so it would have stayed best for iterations 2 and 3: converged; with the fix
    # pushed one candidate later (iteration 2) it is found, but not converged
    cfg = SearchConfig(candidates_per_iteration=1, max_iterations=3, patience=2)
    first = _search(data, i, tok, tenacity_scorer, prop, cfg)
    assert first.best_passes and first.iterations == 1 and first.converged
    cands = _candidates(prop, cfg, None)
    later = search_row([cands[0], cands[0] | {min(ref): wrong}, *cands[1:]],
                       lambda outs: decode(data, i, tok, outs),
                       lambda hunks: verify(tenacity_scorer.context(data.records[i]), hunks, tenacity_scorer,
                                            [h.buggy_text for h in data.records[i].hunks]), cfg)
    assert later.best_passes and later.iterations == 2 and not later.converged


def test_one_edit_decoding_reaches_a_two_position_fix_after_the_single_edits(
        data, tok, tenacity_scorer, rows):
    """The default (`eval.max_edits: 1`): the fix of `other != 0` turns the tokens ` `, `!` into
    ` =`, `=`. The greedy fix is the best single edit, half the fix (`other =!= 0`), and fails;
    the other single edit (`other = 0`) fails too; the joint candidate after them (both edits)
    is the fix and passes."""
    i, ref, anchors, _pos, _wrong = rows["func_pm_op_flip_cmp"]
    assert len(ref) == 2
    prop = _proposal(ref, data.inputs[i], anchors, None, ())
    cands = _candidates(prop, CFG, 1)
    assert [len(c) for c in cands[:3]] == [1, 1, 2] and cands[2] == ref
    verdicts = []
    oc = _search(data, i, tok, tenacity_scorer, prop, verdicts=verdicts, max_edits=1)
    assert [v.passes for v in verdicts] == [False, False, True]
    assert not oc.greedy_passes and oc.best_passes and oc.best_rank == 2 and oc.best_outputs == ref


def test_second_candidate_on_a_sample_row(env_split, tok, tenacity_scorer):
    """The same on a real SWE-smith row (several changed positions): the greedy fix has one
    wrong token; the reference is the model's second candidate and the tests pass it."""
    ref = reference_outputs(env_split, 0, tok)
    anchors = {a for a, _n in env_split.records[0].segments}
    pos = max(p for p in ref if p not in anchors)
    wrong = (tok.encode(" pass")[0],)
    assert len(ref) > 1 and wrong != ref[pos]
    verdicts = []
    oc = _search(env_split, 0, tok, tenacity_scorer,
                 _proposal(ref, env_split.inputs[0], anchors, pos, wrong), verdicts=verdicts)
    assert not verdicts[0].passes and oc.best_passes and oc.best_rank == 1
    assert oc.best_hunks == [h.fixed_text for h in env_split.records[0].hunks]


def test_the_verifier_passes_what_the_tests_cannot_tell_apart(data, tok, tenacity_scorer, rows):
    """`other <= 0` for `other == 0`: the tests pass it, so the search keeps the greedy fix
    (pass@k with test feedback, no reference): resolved after search, yet not exact."""
    i, ref, anchors, pos, wrong = rows["func_pm_op_flip_cmp"]
    oc = _search(data, i, tok, tenacity_scorer, _proposal(ref, data.inputs[i], anchors, pos, wrong))
    assert oc.greedy_passes and oc.best_rank == 0 and oc.best_outputs == {**ref, pos: wrong}
    refs = [h.fixed_text for h in data.records[i].hunks]
    m = search_metrics([oc], [oc.best_hunks == refs], 1)
    assert m["resolved_after_search"] == 1.0 and m["exact_after_search"] == 0.0
