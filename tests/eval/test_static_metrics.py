"""Oracle / random / copy scores of the static metrics on the real sample's hunks."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hrm.eval.code_checks import check_fragments
from hrm.eval.fragments import compiles, reference_wrapper, syntax_valid
from hrm.eval.metrics import q_halt_metrics, row_metrics
from hrm.eval.model_pass import integration_share
from hrm.eval.rows import RowResult, tiers_reached
from hrm.eval.token_metrics import edit_positions, score_row


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


def test_edit_accuracy_separates_fixing_from_copying():
    buggy = [5, 6, 7, 8, 2]
    target = [5, 9, 7, 8, 2]
    labels = np.array([-100, -100] + target)
    assert edit_positions(buggy, target) == [1]
    oracle = score_row(labels.copy(), labels, -100, buggy)
    copy = score_row(np.array([0, 0] + buggy), labels, -100, buggy)
    rand = score_row(np.array([0, 0, 11, 12, 13, 14, 15]), labels, -100, buggy)
    assert (oracle.edit_correct, oracle.edit_total, oracle.exact) == (1, 1, True)
    assert copy.edit_correct == 0 and copy.token_correct == 4 and not copy.exact
    assert rand.token_correct == 0 and rand.edit_correct == 0


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


def test_tiers_are_nested_and_row_metrics(sample_hunks):
    from hrm.eval.code_checks import CodeCheck
    from hrm.eval.token_metrics import TokenScores

    assert tiers_reached(CodeCheck(True, True, False, "file"), True) == 2  # no AST -> no tests tier
    assert tiers_reached(CodeCheck(False, True, True, "file"), True) == 0
    tok = TokenScores(3, 4, False, 0, 1)
    rows = [RowResult("a", ["x"], ["y"], tok, CodeCheck(True, True, True, "file"), True, "", {},
                      4, 1.0, True),
            RowResult("b", ["x"], ["y"], tok, CodeCheck(True, None, None, "excluded"), None,
                      "no env", {}, -1, None, False)]
    m = row_metrics(rows, tests_enabled=True)
    assert m["token_accuracy_all"] == 0.75 and m["edit_accuracy"] == 0.0
    assert m["code_compilation_success"] == 1.0 and m["code_rows_excluded"] == 1.0
    assert m["resolved_rate"] == 0.5 and m["resolved_rows_without_env"] == 1.0
    assert m["code_tiered_accuracy"] == 1.0
    assert row_metrics(rows, tests_enabled=False)["resolved_rate"] is None


def test_file_ast_match_equals_a_full_dump(tenacity_scorer, tenacity_rows):
    """The statement-wise AST comparison of spliced files agrees with dumping whole files, on
    layout-only edits (match) and real edits (no match)."""
    from hrm.eval.code_checks import check_in_files, splice_files
    from hrm.eval.fragments import normalized_ast

    checked = 0
    for _inst, rec in tenacity_rows:
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
