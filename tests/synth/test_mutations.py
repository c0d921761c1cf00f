"""Every mutation kind applies as a small text edit that compiles and changes the AST."""

from __future__ import annotations

import ast
import difflib

import pytest

from hrm.envs.results import TestResult
from hrm.synth.mutations import KINDS, apply_site, enumerate_sites
from hrm.synth.statement import leaks_patch, write_statement

SOURCE = '''\
def clamp(values, lo, hi):
    """Clamp and total."""
    total = 0
    out = []
    for i in range(len(values)):
        v = values[i]
        if v < lo and lo is not None:
            v = lo
        if v > hi:
            v = hi
        else:
            total += v * 2
        out.append(v)
    first = out[1:]
    with open(lo) as fh:
        fh.read()
    pair = divmod(hi.real, hi.imag)
    return out[: len(out)], total, first, pair
'''


def _changed(before: str, after: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0,
                                              lineterm="")
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_every_kind_has_sites_that_compile_and_change_the_ast():
    sites = enumerate_sites(SOURCE, "m.py")
    assert {s.kind for s in sites} == set(KINDS)
    for site in sites:
        mutated = apply_site(SOURCE, site)
        if mutated is None:
            continue
        compile(mutated, "m.py", "exec")
        assert ast.dump(ast.parse(mutated)) != ast.dump(ast.parse(SOURCE)), site
        assert len(_changed(SOURCE, mutated)) <= 12, site  # a local edit, not a rewrite
    kept_kinds = {s.kind for s in sites if apply_site(SOURCE, s) is not None}
    assert kept_kinds == set(KINDS)


@pytest.mark.parametrize(("kind", "expect_minus", "expect_plus"), [
    ("op_flip_cmp", "        if v < lo and lo is not None:",
     "        if v >= lo and lo is not None:"),
    ("op_flip_bool", "        if v < lo and lo is not None:",
     "        if v < lo or lo is not None:"),
    ("op_change", "            total += v * 2", "            total += v / 2"),
    ("op_change_const", "    total = 0", "    total = 1"),
    ("op_off_by_one", "    for i in range(len(values)):", "    for i in range(len(values) - 1):"),
])
def test_first_site_of_kind_is_the_expected_edit(kind, expect_minus, expect_plus):
    site = next(s for s in enumerate_sites(SOURCE, "m.py") if s.kind == kind)
    changed = _changed(SOURCE, apply_site(SOURCE, site))
    assert changed == ["-" + expect_minus, "+" + expect_plus]


def test_invert_if_swaps_branches_and_negates():
    site = next(s for s in enumerate_sites(SOURCE, "m.py") if s.kind == "ctrl_invert_if")
    mutated = apply_site(SOURCE, site)
    assert "        if not (v > hi):\n            total += v * 2\n        else:\n            v = hi\n" in (
        mutated)


def test_remove_cond_and_assign_delete_whole_statements():
    for kind, gone in [("remove_cond", "if v < lo and lo is not None:"),
                       ("remove_assign", "total = 0")]:
        site = next(s for s in enumerate_sites(SOURCE, "m.py") if s.kind == kind)
        mutated = apply_site(SOURCE, site)
        assert gone not in mutated and all(ln.startswith("-") for ln in _changed(SOURCE, mutated))


def test_shuffle_swaps_only_independent_statements():
    sites = [s for s in enumerate_sites(SOURCE, "m.py") if s.kind == "ctrl_shuffle"]
    # `total = 0` / `out = []` are independent; `v = values[i]` feeds the `if`: not a pair.
    mutated = apply_site(SOURCE, sites[0])
    assert "    out = []\n    total = 0\n" in mutated


def test_statement_has_no_diff_lines_and_leak_check_works():
    patch = "--- a/m.py\n+++ b/m.py\n@@ -3 +3 @@\n-    total = 0\n+    total = 1\n"
    failing = [TestResult("tests/test_m.py::test_total", "failed", 0.1, "assert 7 == 6")]
    text = write_statement(function="clamp", module="m", failing=failing, n_passing=3,
                           patch=patch)
    assert "tests/test_m.py::test_total" in text and "assert 7 == 6" in text
    assert not any(ln.startswith(("+", "-", "@@")) for ln in text.splitlines())
    assert not leaks_patch(text, patch)
    assert leaks_patch(text + "note: total = 1 is wrong\n", patch)
    leaky = [TestResult("t::x", "failed", 0.1, "NameError:     total = 1 here")]
    assert "total = 1" not in write_statement(function="clamp", module="m", failing=leaky,
                                              n_passing=0, patch=patch)


def test_short_changed_lines_do_not_leak_through_messages():
    """A changed line shorter than 6 characters (`i + 1`) used to pass the filter unseen."""
    patch = ("--- a/m.py\n+++ b/m.py\n@@ -3,3 +3,3 @@\n     total = (\n-        i + 1\n"
             "+        i - 1\n     )\n")
    leaky = [TestResult("t::x", "failed", 0.1, "AssertionError: assert (i - 1) == 3"),
             TestResult("t::y", "failed", 0.1, "AssertionError: got i+1 instead")]
    text = write_statement(function="clamp", module="m", failing=leaky, n_passing=0, patch=patch)
    assert "i - 1" not in text and "i+1" not in text
    assert "`t::x` (failed)" in text and "`t::y` (failed)" in text
    assert not leaks_patch(text, patch)
    assert leaks_patch(text + "note: i - 1 is wrong\n", patch)
    # token-wise, not substring: `i + 1` is not inside `pi + 10`; single tokens never count
    assert not leaks_patch("pi + 10 is fine\n", patch)
    one_token = "--- a/m.py\n+++ b/m.py\n@@ -3 +3 @@\n-    return\n+    pass\n"
    ok = [TestResult("t::z", "failed", 0.1, "AssertionError: return value was None")]
    assert "return value was None" in write_statement(function="f", module="m", failing=ok,
                                                      n_passing=1, patch=one_token)
