"""Typed outcome of one sandboxed pytest run, built from the report plugin's JSON lines.

`verify_reports` decides whether the lines can be believed before anything reads an outcome
from them (docs/envs.md "Test results the code under test cannot forge"): with a key, every line
must carry the HMAC chain the plugin computes; with or without one, the lines must form one
pytest session (started first, finished last with pytest's real exit status, each test phase
reported once, in order, and an exit status that agrees with the outcomes). A run whose lines
fail any check is refused: every requested test counts as `error`, and the run is no evidence
either way (`TestRun.sandbox_error`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
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
    refused: str = ""
    """Why the run's report was refused (`verify_reports`: a line that could have been forged,
    a session cut short or an exit status that disagrees with it); empty when it was believed."""

    @property
    def sandbox_error(self) -> str:
        """Why the run is no evidence either way (empty when pytest ran and its report holds)."""
        if self.refused:
            return REFUSED + self.refused
        if self.started:
            return ""
        return "pytest never started in the sandbox: " + (self.output.strip()[-300:] or
                                                          f"exit {self.exit_code}")

    @property
    def passed(self) -> bool:
        """True iff every requested test passed and pytest exited 0 within its limits."""
        return (
            not self.refused
            and not self.timed_out
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


REFUSED = "test report refused: "


def refused_results(node_ids: list[str], why: str) -> dict[str, TestResult]:
    """Every requested test an `error`: a refused report says nothing about any of them."""
    return {n: TestResult(n, "error", 0.0, REFUSED + why) for n in node_ids}


_PHASES = ("setup", "call", "teardown")
_FAILED_EXIT = 1  # pytest.ExitCode.TESTS_FAILED


class ReportRefused(ValueError):
    """The report lines cannot be believed (see `verify_reports`)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(message)
        self.line = line
        """The first line that cannot be believed (1-based; 0: the report as a whole)."""


def verify_reports(data: bytes, key: bytes | None, *, exit_code: int | None) -> list[dict]:
    """The plugin's records from the raw report `data`, or ReportRefused saying why not.

    `key`: the run's secret (None: an unauthenticated channel, structure checked only);
    `exit_code`: the process's exit status, None when the sandbox killed it. A killed run never
    passes, so its report is believed up to the first line that fails a check (a fork bomb's
    copies of pytest write lines of their own; the kill may cut the last line short).
    """
    try:
        return _verified(data, key, exit_code)
    except ReportRefused as exc:
        if exit_code is None and exc.line:
            return _verified(data, key, exit_code, upto=exc.line - 1)
        raise


def _verified(data: bytes, key: bytes | None, exit_code: int | None,
              upto: int | None = None) -> list[dict]:
    killed = exit_code is None
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if upto is not None:
        lines = lines[:upto]
    records: list[dict] = []
    mac = ""
    for i, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            if killed and i == len(lines):
                break  # the line the kill cut short
            raise ReportRefused(f"report line {i} is not a JSON record", i) from None
        if rec.get("seq") != i - 1:
            raise ReportRefused(
                f"report line {i} is out of sequence (seq {rec.get('seq')!r})", i)
        if key is not None:
            given = rec.pop("mac", None)
            body = json.dumps(rec, sort_keys=True)
            mac = hmac.new(key, (mac + body).encode(), hashlib.sha256).hexdigest()
            if not isinstance(given, str) or not hmac.compare_digest(given, mac):
                raise ReportRefused(f"report line {i} fails its HMAC: not written by the "
                                    "report plugin in this session", i)
        records.append(rec)
    _check_session(records, exit_code)
    return records


def _check_session(records: list[dict], exit_code: int | None) -> None:
    """One pytest session, in order, whose exit status agrees with its outcomes."""
    if not records:
        return  # pytest never started: `TestRun.started` is False
    first = records[0]
    if (first.get("when"), first.get("outcome")) != ("session", "started"):
        raise ReportRefused("report line 1 is not the session start", 1)
    seen: dict[str, list[str]] = {}
    failed = False
    finish = None
    for i, rec in enumerate(records[1:], 2):
        when, outcome = rec.get("when"), rec.get("outcome")
        if finish is not None:
            raise ReportRefused(f"report line {i} follows the session finish", i)
        if when == "session":
            if outcome != "finished":
                raise ReportRefused(f"report line {i}: a second session start", i)
            finish = rec
            continue
        if outcome == "failed":
            failed = True
        if when not in _PHASES or rec.get("subtest") or outcome == "rerun":
            continue
        done = seen.setdefault(str(rec.get("nodeid")), [])
        if when in done:
            raise ReportRefused(f"report line {i}: {when} of {rec.get('nodeid')} reported twice",
                                i)
        if when != "setup" and "setup" not in done:
            raise ReportRefused(f"report line {i}: {when} of {rec.get('nodeid')} before its "
                                "setup", i)
        done.append(when)
    if exit_code is None:
        return  # killed: the session may end anywhere
    if finish is None:
        raise ReportRefused(f"pytest exited {exit_code} without finishing its session")
    status = finish.get("exitstatus")
    if status != exit_code:
        raise ReportRefused(f"the session finished with status {status} but the process "
                            f"exited {exit_code}")
    if exit_code == 0 and failed:
        raise ReportRefused("exit status 0 with failed tests in the report")
    if exit_code == _FAILED_EXIT and not failed:
        raise ReportRefused("exit status 1 (tests failed) with no failed test in the report")


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
