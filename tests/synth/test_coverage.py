"""Test selection: the baseline run's per-test call record (the report plugin's recorder, run
for real in the sandbox) and which tests a mutation site runs."""

from __future__ import annotations

import pytest

from hrm.synth import coverage as cov
from hrm.synth.generator import ordered_sites
from hrm.synth.mutations import Site, apply_site


@pytest.fixture(scope="module")
def schema_baseline(schema_env):
    return cov.record_baseline(schema_env)


def test_request_file_names_match_the_plugin():
    from hrm.envs import pytest_report_plugin as plugin

    assert (plugin.TRACE_REQUEST, plugin.TRACE_VERSION) == (cov.TRACE_REQUEST, cov.TRACE_VERSION)


def test_baseline_records_the_functions_each_test_enters(schema_env, schema_baseline):
    b = schema_baseline
    assert b.fingerprint == schema_env.fingerprint and len(b.passed) > 100
    assert set(b.tests) == set(b.passed) == set(b.test_s)
    assert 0 < sum(b.test_s.values()) < b.duration_s
    spans = cov.function_spans((schema_env.pristine / "schema/__init__.py").read_text())
    first, last = spans["Schema.validate"]
    entered = b.tests["test_schema.py::test_schema"]["schema/__init__.py"]
    assert any(first <= ln <= last for ln in entered)
    assert set().union(*(files for files in b.tests.values())) == {"schema/__init__.py"}
    # nothing outside the source dirs (the test module itself) is recorded
    assert all("test_schema.py" not in files for files in b.tests.values())


def test_plain_runs_record_nothing(schema_env):
    with schema_env.working_copy() as tree:
        run = schema_env.run_tests(tree, ["test_schema.py::test_schema"])
        assert run.passed
        assert not (tree / cov.TRACE_OUT).exists()


def test_selected_tests_are_the_ones_that_fail_with_the_bug(schema_env, schema_baseline):
    """For real mutations: every test the whole suite shows failing is among the selected
    tests, and running only the selection shows the same failures."""
    checked = 0
    for site in ordered_sites(schema_env, 0, ["op_flip_cmp", "op_swap", "remove_cond"]):
        selected = schema_baseline.tests_for(schema_env.pristine, site)
        if not selected:
            continue
        source = (schema_env.pristine / site.file).read_text()
        mutated = apply_site(source, site)
        if mutated is None:
            continue
        with schema_env.working_copy() as tree:
            (tree / site.file).write_text(mutated)
            whole = schema_env.run_tests(tree, ["."])
            if whole.collection_errors or whole.exit_code not in (0, 1):
                continue
            failing = {n for n in schema_baseline.passed
                       if whole.all_tests.get(n) is None
                       or whole.all_tests[n].outcome != "passed"}
            if not failing:
                continue
            assert failing <= set(selected), (site, failing - set(selected))
            only = schema_env.run_tests(tree, selected)
            assert set(only.failing) == failing, site
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def _baseline(tests, outside=None) -> cov.Baseline:
    return cov.Baseline(fingerprint="f", passed=sorted(tests), duration_s=1.0,
                        test_s={n: 0.1 for n in tests}, tests=tests, outside=outside or {})


SOURCE = '''\
import functools


@functools.lru_cache
def cached(x):
    return x + 1


def plain(x):
    def inner(y):
        return y * 2
    return inner(x)


def plain(x):
    return x
'''


def test_tests_for_selects_by_the_function_lines(tmp_path):
    (tmp_path / "m.py").write_text(SOURCE)
    spans = cov.function_spans(SOURCE)
    assert spans["cached"] == (4, 6)  # from the decorator
    assert spans["plain"] == (9, 12)  # the first of two definitions (as apply_site)
    assert spans["plain.<locals>.inner"] == (10, 11)
    b = _baseline({"t::a": {"m.py": [4]}, "t::b": {"m.py": [10]}, "t::c": {"other.py": [4]},
                   "t::d": {}})
    site = Site("m.py", "cached", "op_change", 0, 6)
    assert b.tests_for(tmp_path, site) == ["t::a"]
    # a nested function's code lies inside the outer one: its callers are selected
    assert b.tests_for(tmp_path, Site("m.py", "plain", "op_change", 0, 12)) == ["t::b"]
    assert b.tests_for(tmp_path, Site("m.py", "plain.<locals>.inner", "op_change", 0, 11)) == [
        "t::b"]
    # no test entered it: not covered
    b2 = _baseline({"t::a": {"m.py": [9]}})
    assert b2.tests_for(tmp_path, site) == []
    # entered while importing: the whole suite
    b3 = _baseline({"t::a": {"m.py": [4]}}, outside={"m.py": [4]})
    assert b3.tests_for(tmp_path, site) is None


def test_run_limits_follow_the_baseline_durations():
    b = cov.Baseline(fingerprint="f", passed=["t::a", "t::b"], duration_s=4.0,
                     test_s={"t::a": 3.0, "t::b": 0.1}, tests={}, outside={})
    timing = b.timing(cap_s=60.0)
    assert timing.overhead_s == pytest.approx(0.9)
    # 4 x (start-up + the tests' baseline time) + a failure report's allowance per test,
    # never more than a whole-suite run's 4 x the baseline run
    assert timing.timeout_s(["t::a"]) == pytest.approx(15.6 + cov.REPORT_S)
    assert timing.timeout_s(None) == pytest.approx(16.0)
    assert timing.timeout_s(["t::b"]) == cov.MIN_TIMEOUT_S  # floor
    many = [f"t::{i}" for i in range(30)]  # unknown ids count for their reports only
    assert timing.timeout_s(many) == pytest.approx(4 * 0.9 + 30 * cov.REPORT_S)
    assert b.timing(cap_s=10.0).timeout_s(None) == 10.0  # envs.timeout_s caps it
    quick = cov.Baseline(fingerprint="f", passed=["t::b"], duration_s=1.0, test_s={"t::b": 0.1},
                         tests={}, outside={})
    lots = [f"t::{i}" for i in range(100)]
    assert quick.timing(cap_s=60.0).timeout_s(lots) == 10.0  # whole-suite limit: at least 10 s


def test_baselines_are_stored_per_output_and_reused(schema_env, schema_baseline, tmp_path,
                                                    monkeypatch):
    out = tmp_path / "instances.jsonl"
    cov.save_baselines(out, {schema_env.repo_id: schema_baseline})
    monkeypatch.setattr(cov, "record_baseline", lambda env: pytest.fail("recorded again"))
    again = cov.baseline_for(schema_env, out)
    assert again.to_json() == schema_baseline.to_json()
    (tmp_path / "instances.jsonl.baseline.json").write_text("{not json")
    with pytest.raises(Exception, match="unreadable synth baseline"):
        cov.baseline_for(schema_env, out)
