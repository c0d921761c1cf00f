"""Typed outcome of one sandboxed pytest run, built from the report plugin's JSON lines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Outcome = Literal["passed", "failed", "error", "timeout", "missing", "skipped"]
"""`missing`: pytest never reported the node id (not found: exit 4, or a collection error);
`timeout`: the run was killed before the test reported; `skipped` counts as not passing."""


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class

    node_id: str
    outcome: Outcome
    duration_s: float = 0.0
    message: str = ""
    """Short failure message (exception / assertion line), empty when passed."""


@dataclass
class TestRun:
    __test__ = False

    results: dict[str, TestResult]
    """One entry per requested node id, in request order."""
    exit_code: int | None
    """pytest's exit status; None when the run was killed."""
    timed_out: bool
    output_truncated: bool
    output: str
    """Captured stdout+stderr, capped at envs.max_output_kb."""
    duration_s: float
    isolation: str
    """How the run was confined (e.g. `netns+ro-cache+uid`); see hrm.envs.sandbox."""
    all_tests: dict[str, TestResult] = field(default_factory=dict)
    """Every test pytest reported (not only the requested ids)."""
    collection_errors: list[str] = field(default_factory=list)
    """Node ids (files/modules) whose collection failed, e.g. a broken import."""
    killed_reason: str = ""
    """Why the sandbox ended the run early (timeout, rlimit signal); empty otherwise."""
    started: bool = True
    """False when pytest never started (the sandbox itself failed, e.g. `unshare: fork
    failed`): the run says nothing about the tests, see `sandbox_error`."""

    @property
    def sandbox_error(self) -> str:
        """Why the run is no evidence either way (empty when pytest ran)."""
        if self.started:
            return ""
        return "pytest never started in the sandbox: " + (self.output.strip()[-300:] or
                                                          f"exit {self.exit_code}")

    @property
    def passed(self) -> bool:
        """True iff every requested test passed and pytest exited 0 within its limits."""
        return (
            not self.timed_out
            and self.exit_code == 0
            and all(r.outcome == "passed" for r in self.results.values())
        )

    @property
    def failing(self) -> list[str]:
        """Requested node ids that did not pass (failed, error, timeout, missing, skipped)."""
        return [n for n, r in self.results.items() if r.outcome != "passed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results.values():
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


def read_reports(path: Path) -> list[dict]:
    """Read the plugin's JSON lines; a line cut short by a kill is ignored (it is the last)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def aggregate(records: list[dict]) -> tuple[dict[str, TestResult], list[str]]:
    """Fold setup/call/teardown and subtest reports into one outcome per test node id.

    Any failed call (subtests included) makes the test `failed`; a failed setup or teardown
    makes it `error`; a test without a finished call report is `missing` here (the caller
    turns it into `timeout` when the run was killed).
    """
    per_test: dict[str, dict] = {}
    collection_errors: list[str] = []
    for rec in records:
        node = rec["nodeid"]
        if rec["when"] == "session":
            continue
        if rec["when"] == "collect":
            collection_errors.append(node or "<session>")
            continue
        st = per_test.setdefault(node, {"call": False, "failed": False, "error": False,
                                        "skipped": False, "duration": 0.0, "message": ""})
        st["duration"] += rec.get("duration", 0.0)
        if rec["when"] == "call" and not rec.get("subtest"):
            st["call"] = True
        if rec["outcome"] == "skipped":
            st["skipped"] = True
            st["call"] = True  # a skip in setup ends the test without a call report
        if rec["outcome"] == "failed":
            if rec["when"] == "call":
                st["failed"] = True
            else:
                st["error"] = True
                st["call"] = True
            if not st["message"]:
                st["message"] = rec.get("message", "")
    out: dict[str, TestResult] = {}
    for node, st in per_test.items():
        if st["error"]:
            outcome: Outcome = "error"
        elif st["failed"]:
            outcome = "failed"
        elif not st["call"]:
            outcome = "missing"
        elif st["skipped"]:
            outcome = "skipped"
        else:
            outcome = "passed"
        out[node] = TestResult(node, outcome, round(st["duration"], 4), st["message"])
    return out, collection_errors


def select(
    all_tests: dict[str, TestResult], node_ids: list[str], *, timed_out: bool
) -> dict[str, TestResult]:
    """Outcome per requested id; an id naming a file/class aggregates the tests under it."""
    _rank = {"error": 5, "failed": 4, "timeout": 3, "missing": 2, "passed": 1, "skipped": 0}
    results: dict[str, TestResult] = {}
    for node in node_ids:
        hit = all_tests.get(node)
        if hit is None:
            prefix = node.rstrip("/")
            under = [r for n, r in all_tests.items()
                     if n.startswith(prefix + "::") or n.startswith(prefix + "/")]
            if under:
                worst = max(under, key=lambda r: _rank[r.outcome])
                hit = TestResult(node, worst.outcome, sum(r.duration_s for r in under),
                                 worst.message)
        if hit is None:
            hit = TestResult(node, "timeout" if timed_out else "missing", 0.0,
                             "killed by the wall-clock limit" if timed_out
                             else "not reported by pytest (not found or not collected)")
        elif hit.outcome == "missing" and timed_out:
            hit = TestResult(node, "timeout", hit.duration_s, "killed by the wall-clock limit")
        results[node] = TestResult(node, hit.outcome, hit.duration_s, hit.message)
    return results
