"""Which tests can see a mutated function: the baseline run's per-test call record.

The generator runs each environment's whole suite once on the pristine tree with the report
plugin's call recorder on (`hrm/envs/pytest_report_plugin.py`: a `.hrm-trace-request.json` in
the working copy asks for it). That run gives the baseline (tests passing on the pristine tree)
and, per test, the functions of `source_dirs` it entered (file + first line of each code
object). A candidate mutating function F then runs only the baseline-passing tests that entered
code inside F's lines (`Baseline.tests_for`):

- F entered outside any test (while importing during collection, between tests): `None`, the
  whole suite runs (a function run at import time can change what every test sees);
- no test entered F: an empty list, the site is skipped (`not_covered`);
- otherwise the tests that did, in baseline order.

What the record cannot see: code run in a subprocess the test starts, and a higher-scoped
fixture's work (recorded for the first test that set it up only). Both can only make the
selection smaller than the set of tests that would fail, never make a kept instance wrong:
PASS_TO_PASS tests are still run with the bug by the confirmation run, and FAIL_TO_PASS are
tests that did fail.

`Baseline`s are stored per environment in `<out>.baseline.json` (keyed by repo id, with the
environment fingerprint), so a resumed run selects exactly as the interrupted one did.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hrm.envs import RepoEnvironment
from hrm.errors import InputError
from hrm.synth.mutations import Site, _functions

TRACE_REQUEST = ".hrm-trace-request.json"
"""The request file the report plugin looks for in the run's working directory."""
TRACE_OUT = ".hrm-trace.json"
TRACE_VERSION = 1
"""The plugin's `TRACE_VERSION`; also stored with each baseline (a mismatch recomputes it)."""
MIN_TIMEOUT_S = 5.0
"""Shortest wall-clock limit of a candidate's test run (see `RunTiming`)."""
REPORT_S = 0.1
"""Allowance per test for pytest reporting its failure (measured: ~0.04 s idle, schema)."""


@dataclass(frozen=True)
class RunTiming:
    """Wall-clock limits of candidate runs, from the baseline's per-test durations.

    A run of some tests may take 4x what they took in the baseline plus pytest's start-up
    (the baseline's wall time minus its tests' time), and `REPORT_S` per test for reporting
    a failure (failing tests are slower than passing ones: tracebacks, assertion diffs); at
    least `MIN_TIMEOUT_S`, at most `suite_cap_s` (the limit of a whole-suite run: 4x the
    baseline run, at least 10 s) and `envs.timeout_s`. A mutation that makes them run longer
    than that is most likely looping.
    """

    overhead_s: float
    test_s: dict[str, float]
    cap_s: float
    suite_cap_s: float

    def timeout_s(self, tests: list[str] | None) -> float:
        """The limit for running `tests` (None: the whole suite)."""
        chosen = list(self.test_s) if tests is None else tests
        work = sum(self.test_s.get(n, 0.0) for n in chosen)
        limit = 4 * (self.overhead_s + work) + REPORT_S * len(chosen)
        return round(min(self.cap_s, self.suite_cap_s, max(MIN_TIMEOUT_S, limit)), 2)


@dataclass
class Baseline:
    """The pristine suite of one environment: what passes and what each test entered."""

    fingerprint: str
    passed: list[str]
    """Node ids passing on the pristine tree, sorted."""
    duration_s: float
    """Wall time of the (recorded) baseline run."""
    test_s: dict[str, float]
    """Per passing test: its setup + call + teardown seconds in the baseline run."""
    tests: dict[str, dict[str, list[int]]]
    """Per passing test: {source file: first lines of the code objects it entered}."""
    outside: dict[str, list[int]]
    """Code objects entered outside any test (collection/imports, between tests)."""
    version: int = TRACE_VERSION
    _spans: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"fingerprint": self.fingerprint, "passed": self.passed,
                "duration_s": self.duration_s, "test_s": self.test_s, "tests": self.tests,
                "outside": self.outside, "version": self.version}

    @classmethod
    def from_json(cls, data: dict) -> Baseline:
        return cls(fingerprint=data["fingerprint"], passed=list(data["passed"]),
                   duration_s=float(data["duration_s"]),
                   test_s={n: float(s) for n, s in data["test_s"].items()},
                   tests=data["tests"], outside=data["outside"], version=int(data["version"]))

    def timing(self, cap_s: float) -> RunTiming:
        overhead = max(0.5, self.duration_s - sum(self.test_s.values()))
        return RunTiming(overhead_s=round(overhead, 3), test_s=dict(self.test_s), cap_s=cap_s,
                         suite_cap_s=max(10.0, 4 * self.duration_s))

    def span(self, pristine: Path, site: Site) -> tuple[int, int] | None:
        """(first, last) line of the function `site` mutates (decorators included): the first
        definition with that qualified name, as `apply_site` mutates."""
        spans = self._spans.get(site.file)
        if spans is None:
            spans = function_spans((pristine / site.file).read_text(encoding="utf-8"))
            self._spans[site.file] = spans
        return spans.get(site.function)

    def tests_for(self, pristine: Path, site: Site) -> list[str] | None:
        """The tests to run for `site`: None (the whole suite), [] (none: not covered) or the
        baseline-passing tests that entered the mutated function, in baseline order."""
        span = self.span(pristine, site)
        if span is None:
            return []
        first, last = span

        def inside(lines: list[int] | None) -> bool:
            return any(first <= ln <= last for ln in lines or ())

        if inside(self.outside.get(site.file)):
            return None
        return [n for n in self.passed if inside(self.tests.get(n, {}).get(site.file))]


def function_spans(source: str) -> dict[str, tuple[int, int]]:
    """{qualified name: (first line incl. decorators, last line)} of a module's functions; the
    first definition wins for a name defined twice (as in `apply_site`)."""
    spans: dict[str, tuple[int, int]] = {}
    for name, func in _functions(ast.parse(source)):
        if name not in spans:
            first = min([func.lineno, *(d.lineno for d in func.decorator_list)])
            spans[name] = (first, func.end_lineno)
    return spans


def record_baseline(env: RepoEnvironment) -> Baseline:
    """Run the whole suite once on a fresh copy of the pristine tree with the call recorder on.

    Raises InputError when the suite times out, nothing passes, or the record is missing.
    """
    with env.working_copy() as tree:
        (tree / TRACE_REQUEST).write_text(
            json.dumps({"source_dirs": list(env.spec.source_dirs), "out": TRACE_OUT}),
            encoding="utf-8")
        run = env.run_tests(tree, list(env.spec.test_dirs), keep_writes=True)
        trace_path = tree / TRACE_OUT
        trace = None
        if trace_path.exists():
            try:
                trace = json.loads(trace_path.read_text(encoding="utf-8"))
            except ValueError:
                trace = None
    passed = sorted(n for n, r in run.all_tests.items() if r.outcome == "passed")
    if run.timed_out or not passed:
        raise InputError(f"baseline suite of {env.repo_id} is unusable (timed out: "
                         f"{run.timed_out}, passing tests: {len(passed)}):\n{run.output[-2000:]}")
    if trace is None or trace.get("version") != TRACE_VERSION:
        raise InputError(f"baseline run of {env.repo_id} wrote no usable call record "
                         f"({TRACE_OUT}, version {TRACE_VERSION}): is the report plugin "
                         f"loaded?\n{run.output[-2000:]}")
    keep = set(passed)
    return Baseline(fingerprint=env.fingerprint, passed=passed,
                    duration_s=round(run.duration_s, 3),
                    test_s={n: run.all_tests[n].duration_s for n in passed},
                    tests={n: files for n, files in trace["tests"].items() if n in keep},
                    outside=trace["outside"])


def baseline_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".baseline.json")


def load_baselines(out_path: Path) -> dict[str, Baseline]:
    """The baselines stored next to `out_path` ({} when none); unreadable is an InputError."""
    path = baseline_path(out_path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {repo: Baseline.from_json(b) for repo, b in data["envs"].items()}
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"unreadable synth baseline ({type(err).__name__}: {err}); delete it "
                         "to record the baseline again", path=str(path)) from None


def save_baselines(out_path: Path, baselines: dict[str, Baseline]) -> None:
    path = baseline_path(out_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"envs": {r: b.to_json() for r, b in sorted(baselines.items())}},
                              sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def baseline_for(env: RepoEnvironment, out_path: Path) -> Baseline:
    """The stored baseline of `env` for this output, else a freshly recorded (and stored) one.

    A stored baseline of another fingerprint or recorder version is recorded again.
    """
    baselines = load_baselines(out_path)
    stored = baselines.get(env.repo_id)
    if stored is not None and (stored.fingerprint, stored.version) == (env.fingerprint,
                                                                       TRACE_VERSION):
        return stored
    fresh = record_baseline(env)
    baselines[env.repo_id] = fresh
    save_baselines(out_path, baselines)
    return fresh
