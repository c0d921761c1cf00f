"""Test ids and the runner they need. SWE-smith rows name tests by pytest node id; SWE-bench rows
converted with `--format swe-bench` (`hrm.data.swebench`) also name them the way their
repository's runner does:

| style | example | runner |
|---|---|---|
| pytest node id | `tests/test_x.py::TestA::test_b[1]` | `pytest` |
| Django unittest | `test_order_by (ordering.tests.OrderingTests)` | `django` (`tests/runtests.py`) |
| Django docstring | `Regression test for #10348: ChangeList.get_results() ...` | `django` (unittest names a test by its docstring's first line) |
| bare name | `test_issue_12345` | `bare` (sympy's `bin/test`, by function name) |

A row's runner is recorded in its `test_runner` field (absent means `pytest`) and validation
checks every id against that runner's grammar. This project's sandbox runs pytest only: rows of
another runner validate and train, and their test tier says which runner they need.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TEST_RUNNERS = ("pytest", "django", "bare")
DEFAULT_RUNNER = "pytest"

PYTEST_RE = re.compile(r"^[^\s:]+\.py(::\S.*)?\Z")
"""A .py path, optionally followed by ::names (parameters may contain spaces)."""
DJANGO_RE = re.compile(r"^[A-Za-z_]\w* \((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*\)\Z")
BARE_RE = re.compile(r"^[A-Za-z_]\w*\Z")
DOCSTRING_RE = re.compile(r"^\S[^\n\r]*[ \t][^\n\r]*\S\Z")
"""One line of text with words (Django's unittest shortDescription: a docstring's first line)."""


def id_style(test_id: str) -> str | None:
    """`pytest`, `django`, `bare`, `docstring`, or None for something that names no test."""
    if not isinstance(test_id, str):
        return None
    for style, pattern in (("pytest", PYTEST_RE), ("django", DJANGO_RE), ("bare", BARE_RE),
                           ("docstring", DOCSTRING_RE)):
        if pattern.match(test_id):
            return style
    return None


def runner_for(test_ids: Iterable[str]) -> str | None:
    """The runner every id is written for, or None when they mix styles or one names no test."""
    styles = {id_style(t) for t in test_ids}
    if not styles or None in styles:
        return None
    if styles == {"pytest"}:
        return "pytest"
    if styles <= {"django", "docstring"}:
        return "django"
    if styles == {"bare"}:
        return "bare"
    return None


def bad_test_ids(items: Iterable[str], runner: str) -> list[str]:
    """The items that are not test ids of `runner` (ValueError for an unknown runner)."""
    allowed = {"pytest": {"pytest"}, "django": {"django", "docstring"}, "bare": {"bare"}}
    if runner not in allowed:
        raise ValueError(f"unknown test runner {runner!r} (known: {', '.join(TEST_RUNNERS)})")
    return [t for t in items if id_style(t) not in allowed[runner]]
