"""A pytest plugin loaded into every sandboxed run (`-p hrm_pytest_report`).

It writes one JSON line per test report (setup/call/teardown, subtests included) and per
failed collection, a `session started` line first and a `session finished` line (with
pytest's exit status and the number of lines before it) last. Node ids come straight from
pytest, so no junit class-name guessing is needed. This file is copied next to the run's
temporary HOME and must not import anything from `hrm` (it runs inside the environment's venv).

Where the lines go, and why the code under test cannot forge them (`hrm.envs.results`):
- `--hrm-report-fd=N`: the write end of a pipe the host reads. No report file exists that the
  run could rewrite; the fd is made non-inheritable, so a test's subprocesses never get it.
- `--hrm-key-fd=M`: a pipe holding a one-run secret key. It is read and closed when this module
  is imported, i.e. when pytest loads `-p` plugins, before any conftest or test module (and so
  before the package under test) is imported. Each line then carries `mac`, an HMAC-SHA256
  chained over every line before it, so a line written by anyone without the key, a line
  removed, reordered or replayed, or a report cut short all fail the host's check.
- `--hrm-report=PATH` (the container provider): plain lines appended to a file; the host still
  checks their structure, but nothing authenticates them.

Random draws are seeded: before collection and before each test's setup, `random` (and numpy's
global generator when numpy is loaded) gets a seed derived from the test's node id, as
pytest-randomly does. A test whose outcome depends on random draws (tenacity's jittered waits)
then gives the same outcome in every run, so a generated bug caught by such a test is caught
each time or never, and the generator's data is reproducible (`PYTHONHASHSEED` is fixed by the
caller).

Per-test call recording (for the generator's test selection, `hrm.synth.coverage`): when the
run's working directory holds `.hrm-trace-request.json` (`{"source_dirs": [...], "out": NAME}`,
written there by the caller before the run), a `sys.settrace` hook notes every Python function
entered, and at the end of the session `NAME` (in the working directory) receives, per test
node id, the functions of the source dirs that the test entered during its setup, call and
teardown, as `{file relative to the working directory: [first line of the code object]}`;
functions entered outside any test (imports during collection, hooks between tests) are
listed under `outside`. The hook never traces lines (it returns None), so the cost is one
set insertion per Python call. Module bodies are not recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading

import pytest

_PATH: str | None = None
_MAX_MESSAGE = 400
TRACE_REQUEST = ".hrm-trace-request.json"
TRACE_VERSION = 1


def _argv_int(name: str) -> int | None:
    """`--name=N` from the command line (read at import: options are not parsed yet)."""
    for arg in sys.argv[1:]:
        if arg.startswith(name + "="):
            return int(arg.split("=", 1)[1])
    return None


def _make_writer():
    """The line writer, holding the fd and the key in its closure (never in a module global)."""
    report_fd, key_fd = _argv_int("--hrm-report-fd"), _argv_int("--hrm-key-fd")
    key = b""
    if key_fd is not None:
        chunks = []
        while chunk := os.read(key_fd, 64):
            chunks.append(chunk)
        os.close(key_fd)
        key = b"".join(chunks)
    if report_fd is not None:
        os.set_inheritable(report_fd, False)
    state = {"mac": "", "count": 0}

    def write(record: dict) -> None:
        record = dict(record, seq=state["count"])
        if key:
            body = json.dumps(record, sort_keys=True)
            record["mac"] = state["mac"] = hmac.new(
                key, (state["mac"] + body).encode(), hashlib.sha256).hexdigest()
        line = (json.dumps(record) + "\n").encode()
        state["count"] += 1
        if report_fd is not None:
            view = memoryview(line)
            while view:
                view = view[os.write(report_fd, view):]
        elif _PATH:
            with open(_PATH, "a", encoding="utf-8") as fh:
                fh.write(line.decode())

    return write


_WRITE = _make_writer()


def pytest_addoption(parser):
    parser.addoption("--hrm-report", default=None, help="JSON-lines report file (hrm sandbox)")
    parser.addoption("--hrm-report-fd", default=None, help="report pipe (hrm sandbox)")
    parser.addoption("--hrm-key-fd", default=None, help="report key pipe (hrm sandbox)")


class _Recorder:
    """Which code objects each test entered (see the module docstring)."""

    def __init__(self, root: str, source_dirs: list[str], out: str):
        self.root = root
        self.prefixes = tuple(
            root + os.sep if d.strip("/") in ("", ".") else
            os.path.join(root, d.strip("/")) + os.sep for d in source_dirs)
        self.out = os.path.join(root, out)
        self.codes: set = set()
        self.tests: dict[str, dict[str, set[int]]] = {}
        self.outside: dict[str, set[int]] = {}
        self._files: dict[str, str | None] = {}

    def trace(self, frame, event, arg):
        self.codes.add(frame.f_code)
        # None: no line events for this frame, only the next call is seen.

    def install(self) -> None:
        sys.settrace(self.trace)
        threading.settrace(self.trace)

    def uninstall(self) -> None:
        sys.settrace(None)
        threading.settrace(None)

    def _rel(self, filename: str) -> str | None:
        rel = self._files.get(filename, "")
        if rel == "":
            path = os.path.realpath(os.path.join(self.root, filename))
            rel = (os.path.relpath(path, self.root).replace(os.sep, "/")
                   if path.startswith(self.prefixes) and path.endswith(".py") else None)
            self._files[filename] = rel
        return rel

    def flush(self, into: dict[str, set[int]]) -> None:
        codes, self.codes = self.codes, set()
        for code in codes:
            if code.co_name == "<module>":
                continue
            rel = self._rel(code.co_filename)
            if rel is not None:
                into.setdefault(rel, set()).add(code.co_firstlineno)

    def start_test(self, nodeid: str) -> None:
        self.flush(self.outside)
        self.install()  # again: a test may have replaced or removed the hook

    def end_test(self, nodeid: str) -> None:
        self.flush(self.tests.setdefault(nodeid, {}))

    def write(self) -> None:
        self.uninstall()
        self.flush(self.outside)

        def plain(files: dict[str, set[int]]) -> dict[str, list[int]]:
            return {f: sorted(lines) for f, lines in sorted(files.items())}

        data = {"version": TRACE_VERSION, "outside": plain(self.outside),
                "tests": {n: plain(files) for n, files in self.tests.items()}}
        tmp = self.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.out)


_RECORDER: _Recorder | None = None


def pytest_configure(config):
    global _PATH, _RECORDER
    _PATH = config.getoption("--hrm-report")
    root = os.path.realpath(str(config.invocation_params.dir))
    request = os.path.join(root, TRACE_REQUEST)
    if os.path.exists(request):
        with open(request, encoding="utf-8") as fh:
            spec = json.load(fh)
        _RECORDER = _Recorder(root, list(spec["source_dirs"]), str(spec["out"]))
        _RECORDER.install()


def _seed_random(label: str) -> None:
    import random

    seed = int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big")
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)


def pytest_collection(session):
    _seed_random("collection")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _seed_random(item.nodeid)


def pytest_runtest_logstart(nodeid, location):
    if _RECORDER is not None:
        _RECORDER.start_test(nodeid)


def pytest_runtest_logfinish(nodeid, location):
    if _RECORDER is not None:
        _RECORDER.end_test(nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _RECORDER is not None:
        _RECORDER.write()
    _write({"nodeid": "", "when": "session", "outcome": "finished", "duration": 0.0,
            "subtest": False, "message": "", "exitstatus": int(exitstatus)})


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
    _WRITE(record)


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
