"""The static metrics on the real sample: fragment tiers (oracle / random / copy), position
scores (oracle / copy / located but wrong), nested tiers and split metrics, bootstrap intervals,
the breakdown, the unigram baseline, and file-context AST matching."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from hrm.eval.code_checks import check_fragments
from hrm.eval.fragments import compiles, reference_wrapper, syntax_valid
from hrm.eval.metrics import bootstrap_ci, breakdown, q_halt_metrics, row_metrics
from hrm.eval.model_pass import ModelPass, integration_share, paired_control_metrics, sign_test_p
from hrm.eval.rows import RowResult, tiers_reached
from hrm.eval.token_metrics import score_outputs

from .conftest import reference_outputs


def _shuffle(text: str, seed: int) -> str:
    chars = list(text)
    random.Random(seed).shuffle(chars)
    return "".join(chars)


def test_fragment_tiers_oracle_random_copy(sample_hunks):
    oracle, rand, copy = [], [], []
    for k, (_inst, hunks) in enumerate(sample_hunks):
        refs = [h.fixed_text for h in hunks]
        oracle.append(check_fragments(refs, refs))
        rand.append(check_fragments([_shuffle(r, k) for r in refs], refs))
        copy.append(check_fragments([h.buggy_text for h in hunks], refs))
    checked = [i for i, c in enumerate(oracle) if not c.excluded]
    assert len(checked) >= 25  # most real regions compile under some wrapper
    assert all(oracle[i].compiles and oracle[i].ast_match and oracle[i].syntax for i in checked)
    assert sum(bool(rand[i].compiles) for i in checked) == 0
    assert sum(bool(rand[i].syntax) for i in checked) <= 0.1 * len(checked)
    # Copying the buggy code compiles but never matches the fixed AST.
    assert sum(bool(copy[i].compiles) for i in checked) >= 0.9 * len(checked)
    assert sum(bool(copy[i].ast_match) for i in checked) == 0


def test_wrappers_keep_whitespace():
    ref = "        return x + 1\n"
    w = reference_wrapper(ref)
    assert w is not None and "def" in w.description
    # A prediction indented differently fails: no whitespace is rewritten.
    assert not compiles(w.apply("    return x + 1\n"))
    assert check_fragments(["  "], [ref]).compiles is False  # blank output is a failure
    assert check_fragments(["pass\n"], ["    foo(\n"]).excluded  # reference compiles nowhere


def test_syntax_is_fragment_aware():
    ref = "        a,\n    ) -> int:\n        return a\n"  # starts inside a signature
    assert syntax_valid(ref, ref) is True
    assert syntax_valid("        a,\n    ] -> int:\n        return a\n", ref) is False
    assert syntax_valid("    x = 'open\n", "    x = 1\n") is False
    assert syntax_valid("", "    x = 1\n") is False


def test_position_scores_separate_fixing_from_copying(env_split, tok):
    """Oracle: every position right. Copy: every position the fix leaves alone right, none it
    changes. Right positions with wrong outputs: located, but no edit right."""
    for i, rec in enumerate(env_split.records):
        ref = reference_outputs(env_split, i, tok)
        total = sum(n + 1 for _a, n in rec.segments)
        oracle = score_outputs(ref, ref, rec.segments)
        assert (oracle.token_correct, oracle.token_total) == (total, total)
        assert oracle.edit_correct == oracle.edit_total == len(ref) > 0 and oracle.located
        copy = score_outputs({}, ref, rec.segments)
        assert copy.token_correct == total - len(ref) and copy.edit_correct == 0
        assert not copy.located
        wrong = score_outputs({p: (tok.pad_id,) for p in ref}, ref, rec.segments)
        assert wrong.located and wrong.edit_correct == 0
        assert wrong.token_correct == copy.token_correct
        outside = score_outputs({**ref, 10 ** 6: (1,)}, ref, rec.segments)
        assert outside.token_correct == total and not outside.located


def test_q_halt_and_integration_share():
    exact = [True, False, False, True]
    assert q_halt_metrics([3.0, -1.0, -2.0, 0.5], exact)["q_halt_accuracy"] == 1.0
    inverted = q_halt_metrics([-3.0, 1.0, 2.0, -0.5], exact)
    assert inverted["q_halt_accuracy"] == 0.0 and inverted["q_halt_balanced_accuracy"] == 0.0
    assert q_halt_metrics([-1.0, -1.0], [False, False])["q_halt_balanced_accuracy"] is None
    assert integration_share(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == 1.0
    assert integration_share(np.array([2.0, 1.0]), np.array([1.0, 1.0])) == 0.25
    with pytest.raises(ValueError):
        integration_share(np.array([]), np.array([]))


def test_sign_test_p_values():
    # 9 : 1 -> 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    assert sign_test_p(9, 1) == pytest.approx(22 / 1024)
    assert sign_test_p(1, 9) == sign_test_p(9, 1)
    assert sign_test_p(5, 5) == 1.0 and sign_test_p(0, 0) == 1.0
    assert sign_test_p(20, 0) == pytest.approx(2 / 2**20)
    assert sign_test_p(30, 20) == pytest.approx(0.2026, abs=1e-4)  # scipy.stats.binomtest(30, 50)


def test_paired_control_metrics_compare_mean_losses_row_by_row():
    """Per-row mean losses (summed loss / labelled positions): the model lower on rows 0 and 2,
    higher on row 1, tied on row 3 (within float noise)."""
    positions = np.array([2, 4, 1, 10])
    model = np.array([1.0, 4.0, 0.5, 3.0]) * positions
    control = np.array([2.0, 3.0, 0.9, 3.0 + 1e-12]) * positions
    mp = ModelPass(proposals=[], row_loss_sum=model, row_positions=positions, q_halt=np.zeros(4),
                   steps=np.ones(4))
    m = paired_control_metrics(mp, control)
    assert m["reverse_learning_rows_lower"] == 2 and m["reverse_learning_rows_higher"] == 1
    assert m["reverse_learning_integration"] == pytest.approx((2 + 0.5) / 4)
    assert m["reverse_learning_p_value"] == pytest.approx(sign_test_p(2, 1)) == 1.0
    assert m["reverse_learning_control_loss"] == pytest.approx(control.sum() / positions.sum())
    flipped = paired_control_metrics(replace(mp, row_loss_sum=control), model)
    assert flipped["reverse_learning_integration"] == pytest.approx((1 + 0.5) / 4)


def _row(name, kind, code, resolved, tier, tokens, has_env=True, exact=False):
    return RowResult(name, kind, "r", ["x"], ["y"], exact, tokens, code, resolved, "", {}, tier,
                     None if tier < 0 else sum([0.1, 0.2, 0.3, 0.4][:tier]), has_env)


def test_tiers_are_nested_and_row_metrics():
    from hrm.eval.code_checks import CodeCheck
    from hrm.eval.token_metrics import TokenScores

    assert tiers_reached(CodeCheck(True, True, False, "file"), True) == 2  # no AST -> no tests tier
    assert tiers_reached(CodeCheck(False, True, True, "file"), True) == 0
    assert tiers_reached(CodeCheck(None, True, True, "fragment"), None) == 3
    tok = TokenScores(3, 4, 0, 1, False)
    rows = [_row("a", "func_basic", CodeCheck(True, True, True, "file"), True, 4,
                 TokenScores(4, 4, 1, 1, True), exact=True),
            _row("b", "func_pm_remove_cond", CodeCheck(True, None, None, "excluded"), None, -1,
                 tok, has_env=False)]
    m = row_metrics(rows, tests_enabled=True)
    assert m["token_accuracy_all"] == 7 / 8 and m["edit_accuracy"] == 0.5
    assert m["location_accuracy"] == 0.5 and m["exact_accuracy"] == 0.5
    assert m["code_compilation_success"] == 1.0 and m["code_rows_excluded"] == 1.0
    assert m["resolved_rate"] == 0.5 and m["resolved_rows_without_env"] == 1.0
    assert m["code_tiered_accuracy"] == 1.0
    low, high = m["resolved_rate_ci95"]
    assert 0.0 <= low < 0.5 < high <= 1.0
    off = row_metrics(rows, tests_enabled=False)
    assert off["resolved_rate"] is None and off["resolved_rate_ci95"] is None
    assert "exact_accuracy_ci95" not in row_metrics(rows, tests_enabled=True, ci=False)
    table = breakdown(rows, [True, False])
    assert table["inferable"]["inferable"]["rows"] == 1.0  # func_basic
    assert table["inferable"]["non_inferable"]["resolved"] == 0.0  # remove_cond re-adds code
    assert table["kind"]["func_basic"] == {"rows": 1.0, "exact_accuracy": 1.0, "resolved": 1.0,
                                           "resolved_after_search": 1.0, "positions": 4.0,
                                           "token_accuracy": 1.0, "copy_token_accuracy": 0.75}
    assert table["inferable"]["non_inferable"]["token_accuracy"] == 0.75  # TokenScores(3, 4, ...)
    assert set(breakdown(rows, held_out_repos=["r"])["repo"]) == {"r (held out)"}


def test_bootstrap_interval_brackets_the_share():
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([True] * 7) == [1.0, 1.0] and bootstrap_ci([False] * 3) == [0.0, 0.0]
    flags = [True] * 3 + [False] * 17
    low, high = bootstrap_ci(flags)
    assert 0.0 <= low < 0.15 < high <= 0.4
    assert bootstrap_ci(flags) == [low, high]  # seeded: reproducible
    wide, narrow = bootstrap_ci([True, False] * 5), bootstrap_ci([True, False] * 200)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])


def test_unigram_changes_the_row_token_most_often_changed_in_train(splits, tok):
    from hrm.eval.baselines import fit_unigram

    uni = fit_unigram(splits["train"], delete_id=tok.mask_id, end_id=tok.eos_id)
    for split in (splits["val"], splits["test"]):
        for i, rec in enumerate(split.records):
            code = [int(split.inputs[i][p]) for a, n in rec.segments
                    for p in range(a + 1, a + n + 1)]
            pred = uni.predict(split.inputs[i], rec.segments)
            known = [t for t in code if t in uni.change_rate]
            if not known:
                assert pred == {}
                continue
            (pos, out), = pred.items()
            token = int(split.inputs[i][pos])
            assert uni.change_rate[token] == max(uni.change_rate[t] for t in known)
            assert out == uni.output[token] and out != (token,)


def test_file_ast_match_equals_a_full_dump(tenacity_scorer, env_split):
    """The statement-wise AST comparison of spliced files agrees with dumping whole files, on
    layout-only edits (match) and real edits (no match)."""
    from hrm.eval.code_checks import check_in_files, splice_files
    from hrm.eval.fragments import normalized_ast

    checked = 0
    for rec in env_split.records[:3]:
        ctx = tenacity_scorer.context(rec)
        refs = [h.fixed_text for h in ctx.hunks]
        first = refs[0].splitlines(keepends=True)
        commented = ["".join([first[0].rstrip("\n") + "  # a comment\n", *first[1:]]),
                     *refs[1:]]
        variants = {"oracle": refs, "layout only": commented,
                    "copy": [h.buggy_text for h in ctx.hunks],
                    "extra statement": [refs[0] + first[-1], *refs[1:]]}
        ref_files = splice_files(ctx.hunks, refs, ctx.buggy_files)
        results = {}
        for name, pred in variants.items():
            files = splice_files(ctx.hunks, pred, ctx.buggy_files)
            full = all(normalized_ast(files[p]) == normalized_ast(ref_files[p]) for p in files)
            got = check_in_files(pred, refs, ctx.hunks, ctx.buggy_files)
            if got.compiles:
                assert got.ast_match is full, name
                checked += 1
            results[name] = got.ast_match
        assert results["oracle"] is True and results["layout only"] is True
        assert results["copy"] is False
    assert checked >= 6


def test_unigram_candidates_rank_the_row_positions_by_change_rate(splits, tok):
    """The guess's search candidates: one edit each, at distinct positions, in non-increasing
    change rate, the first one the guess itself; a row with no known token has none."""
    from hrm.eval.baselines import fit_unigram

    uni = fit_unigram(splits["train"], delete_id=tok.mask_id, end_id=tok.eos_id)
    seen = 0
    for i, rec in enumerate(splits["val"].records):
        inputs = splits["val"].inputs[i]
        cands = uni.candidates(inputs, rec.segments, 6)
        pred = uni.predict(inputs, rec.segments)
        if not pred:
            assert cands == []
            continue
        assert cands[0] == pred and 1 <= len(cands) <= 6
        positions = [next(iter(c)) for c in cands]
        assert all(len(c) == 1 for c in cands) and len(set(positions)) == len(positions)
        rates = [uni.change_rate[int(inputs[p])] for p in positions]
        assert rates == sorted(rates, reverse=True)
        assert all(c[p] == uni.output[int(inputs[p])] for c, p in zip(cands, positions, strict=True))
        seen += len(cands) > 1
    assert seen > 0
