"""A pytest plugin loaded into every sandboxed run (`-p hrm_pytest_report`).

It appends one JSON line per test report (setup/call/teardown, subtests included) and per
failed collection to the file given as `--hrm-report PATH`. Node ids come straight from pytest,
so no junit class-name guessing is needed. This file is copied next to the run's temporary
HOME and must not import anything from `hrm` (it runs inside the environment's venv).
"""

from __future__ import annotations

import json

_PATH: str | None = None
_MAX_MESSAGE = 400


def pytest_addoption(parser):
    parser.addoption("--hrm-report", default=None, help="JSON-lines report file (hrm sandbox)")


def pytest_configure(config):
    global _PATH
    _PATH = config.getoption("--hrm-report")


def _message(report) -> str:
    longrepr = getattr(report, "longrepr", None)
    if longrepr is None:
        return ""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        text = crash.message
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        text = str(longrepr).strip().splitlines()[-1] if str(longrepr).strip() else ""
    return text[:_MAX_MESSAGE]


def _write(record: dict) -> None:
    if not _PATH:
        return
    with open(_PATH, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def pytest_sessionstart(session):
    # Marks that pytest itself started: a run without this line never got that far (the
    # sandbox could not start it), which is not a test outcome.
    _write({"nodeid": "", "when": "session", "outcome": "started", "duration": 0.0,
            "subtest": False, "message": ""})


def pytest_runtest_logreport(report):
    _write(
        {
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "duration": float(getattr(report, "duration", 0.0) or 0.0),
            # pytest's own and pytest-subtests' reports are TestReport subclasses.
            "subtest": type(report).__name__ != "TestReport",
            "message": _message(report) if not report.passed else "",
        }
    )


def pytest_collectreport(report):
    if report.failed:
        _write({"nodeid": report.nodeid, "when": "collect", "outcome": "failed",
                "duration": 0.0, "subtest": False, "message": _message(report)})
