"""Problem statements are the same on every machine and run: no memory addresses, temporary
paths or measured times from test output."""

from __future__ import annotations

import pytest

from hrm.envs.results import TestResult
from hrm.synth.statement import normalise_message, write_statement

PATCH = "--- a/m.py\n+++ b/m.py\n@@ -3 +3 @@\n-    total = 0\n+    total = 1\n"
TREE = "/tmp/hrm-synth-wc-k2j4/tree"


@pytest.mark.parametrize(("message", "expected"), [
    ("AssertionError: <Future at 0x7feb12ab34cd state=finished raised ValueError>",
     "AssertionError: <Future at 0x... state=finished raised ValueError>"),
    ("AssertionError: 6088.937123456 not less than 20", "AssertionError: <float> not less than 20"),
    ("AssertionError: took 0.0123 s, expected < 0.01", "AssertionError: took <time> s, expected < <time>"),
    ("assert elapsed 1.5 < 1.0", "assert elapsed <time> < <time>"),
    ("assert 1.25s < 1.0s", "assert <time>s < <time>s"),
    ("FileNotFoundError: [Errno 2] No such file or directory: "
     "'/tmp/pytest-of-nobody/pytest-0/test_x0/a.txt'",
     "FileNotFoundError: [Errno 2] No such file or directory: '<tmp>'"),
    (f"ImportError: cannot import name 'x' ({TREE}/schema/__init__.py)",
     "ImportError: cannot import name 'x' (schema/__init__.py)"),
    # deterministic values stay as they are
    ("assert 2.5 == 3.5", "assert 2.5 == 3.5"),
    ("assert [1, 2] == [2, 1]", "assert [1, 2] == [2, 1]"),
    ("Expected 3 seconds, got 4", "Expected 3 seconds, got 4"),
    ("assert 0xff == 0x10", "assert 0xff == 0x10"),
    ("KeyError: 'tmp/x'", "KeyError: 'tmp/x'"),
])
def test_messages_are_normalised(message, expected):
    got = normalise_message(message, (TREE,))
    assert got == expected
    assert normalise_message(got, (TREE,)) == got  # idempotent


def test_statements_of_two_runs_differing_in_addresses_times_and_paths_are_equal():
    def statement(address: str, elapsed: str, tmp: str, tree: str) -> str:
        failing = [
            TestResult("t.py::a", "failed", 0.1, f"AssertionError: <Obj at {address}> != 1"),
            TestResult("t.py::b", "failed", 0.1, f"AssertionError: elapsed {elapsed} > 1"),
            TestResult("t.py::c", "error", 0.1, f"OSError: {tmp}/pytest-of-nobody/pytest-3/f"),
            TestResult("t.py::d", "failed", 0.1, f"SyntaxError: bad ({tree}/pkg/m.py, line 3)"),
        ]
        return write_statement(function="clamp", module="pkg.m", failing=failing,
                               n_passing=3, patch=PATCH, roots=(tree,))

    one = statement("0x7feb12ab34cd", "6088.937", "/tmp/hrm-run-abc/tmp", TREE)
    two = statement("0x7f0000111222", "0.5", "/tmp/hrm-run-xyz/tmp",
                    "/tmp/hrm-synth-wc-zz99/tree")
    assert one == two
    assert "<Obj at 0x...> != 1" in one and "elapsed <time> > 1" in one
    assert "OSError: <tmp>" in one and "(pkg/m.py, line 3)" in one


def test_only_messages_both_bug_runs_agree_on_and_without_measured_values_are_kept():
    from hrm.synth.generator import _stable_message

    def r(message: str) -> TestResult:
        return TestResult("t.py::a", "failed", 0.1, message)

    roots = (TREE,)
    assert _stable_message(r("assert <X at 0x7feb12ab34cd> == 1"),
                           r("assert <X at 0x7f00aa00bb00> == 1"), roots) == (
        "assert <X at 0x...> == 1")
    # a measured integer no rule recognises: the two runs disagree
    assert _stable_message(r("AssertionError: 180 not greater than 250"),
                           r("AssertionError: 183 not greater than 250"), roots) == ""
    # random values: even when the placeholders agree, the rest may not next time
    assert _stable_message(r("AssertionError: 6088.937123 not greater than or equal to 2"),
                           r("AssertionError: 12.5000001 not greater than or equal to 2"),
                           roots) == ""
    assert _stable_message(r("x"), None, roots) == ""
