"""SWE-bench rows: refused by default, converted (patch reversed) with format swe-bench."""

from __future__ import annotations

import json

import unidiff

from hrm.data.instance import read_instances
from hrm.data.pull import pull
from hrm.data.swebench import reverse_patch
from hrm.data.validate import validate

from .conftest import write_jsonl


def test_reverse_patch_is_an_involution_on_real_patches(sample_rows):
    for row in sample_rows:
        fix = reverse_patch(row["patch"])
        assert fix != row["patch"]
        original, reversed_ = unidiff.PatchSet(row["patch"]), unidiff.PatchSet(fix)
        assert (reversed_.added, reversed_.removed) == (original.removed, original.added)
        assert reverse_patch(fix) == row["patch"]


def _swe_bench_row(row: dict, number: int) -> dict:
    """A SWE-bench-shaped row: the FIX as patch, JSON-encoded test lists, SWE-bench fields."""
    return {
        "repo": "jd/tenacity",
        "instance_id": f"jd__tenacity-{number}",
        "base_commit": "0d40e76f" + "0" * 32,
        "patch": reverse_patch(row["patch"]),
        "test_patch": "",
        "problem_statement": row["problem_statement"],
        "hints_text": "",
        "created_at": "2024-11-01T00:00:00Z",
        "version": "9.0",
        "FAIL_TO_PASS": json.dumps(row["FAIL_TO_PASS"]),
        "PASS_TO_PASS": json.dumps(row["PASS_TO_PASS"]),
        "environment_setup_commit": "0d40e76f" + "0" * 32,
    }


def test_swe_bench_rows_refused_then_converted(sample_rows, data_cfg, tmp_path):
    src = write_jsonl(tmp_path / "bench.jsonl", [_swe_bench_row(sample_rows[1], 7), _swe_bench_row(sample_rows[2], 8)])
    refused = pull(str(src), tmp_path / "refused.jsonl", data_cfg)
    assert refused.swe_bench_refused == [f"{src}:1", f"{src}:2"] and refused.converted == 0

    cfg = data_cfg.model_copy(update={"format": "swe-bench"})
    converted = pull(str(src), tmp_path / "converted.jsonl", cfg)
    assert converted.converted == 2 and converted.swe_bench_refused == []
    result = validate(tmp_path / "converted.jsonl", tmp_path / "out", cfg)
    assert result.valid == 2
    first = read_instances(tmp_path / "out" / "instances.jsonl")[0]
    assert first.instance_id == "jd__tenacity.0d40e76f.pr_7"
    assert first.repo == "swesmith/jd__tenacity.0d40e76f"
    assert first.patch == sample_rows[1]["patch"]  # the bug-introducing direction again
    assert first.FAIL_TO_PASS == sample_rows[1]["FAIL_TO_PASS"]
    assert first.extra["original_instance_id"] == "jd__tenacity-7"
    assert first.extra["converted_from"] == "swe-bench" and "test_patch" in first.extra


# Test ids as each SWE-bench repository's runner writes them (rows written here by hand).
STYLES = {
    "pytest": ("pytest-dev/pytest", "pytest-dev__pytest-5103",
               ["testing/test_assertrewrite.py::TestAssertionRewrite::test_unroll_expression"],
               ["testing/test_assertrewrite.py::test_rewrite_infos[a b]"]),
    "django": ("django/django", "django__django-11099",
               ["test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)"],
               ["test_help_text (auth_tests.test_validators.UserAttributeSimilarityValidatorTest)"]),
    "docstring": ("django/django", "django__django-11133",
                  ["Regression test for #10348: ChangeList.get_results() should not use a distinct query.",
                   "test_response_content (httpwrappers.tests.HttpResponseTests)"],
                  ["Make sure HttpResponse accepts memoryview content."]),
    "bare": ("sympy/sympy", "sympy__sympy-20590",
             ["test_immutable"], ["test__aresame", "test_structure"]),
}


def _styled_row(row: dict, style: str) -> dict:
    repo, iid, f2p, p2p = STYLES[style]
    out = _swe_bench_row(row, 1)
    out.update(repo=repo, instance_id=iid, FAIL_TO_PASS=json.dumps(f2p),
               PASS_TO_PASS=json.dumps(p2p))
    return out


def test_every_test_id_style_converts_to_a_valid_row_with_its_runner(sample_rows, data_cfg,
                                                                      tmp_path):
    """Django-style ids, docstring-named tests, bare (sympy) names and pytest node ids: each
    converts, validates, and records the runner its ids need; a row mixing styles is refused
    with the reason and a pytest-runner row holding a Django id is quarantined."""
    rows = [_styled_row(sample_rows[k], style) for k, style in enumerate(STYLES)]
    mixed = _styled_row(sample_rows[5], "bare")
    mixed.update(instance_id="sympy__sympy-1", FAIL_TO_PASS=json.dumps(
        ["test_immutable", "sympy/core/tests/test_basic.py::test_structure"]))
    src = write_jsonl(tmp_path / "bench.jsonl", [*rows, mixed])
    # the mixed row stays unconverted and is quarantined: allow it in the invalid share
    cfg = data_cfg.model_copy(update={"format": "swe-bench", "max_invalid_fraction": 0.5})
    summary = pull(str(src), tmp_path / "converted.jsonl", cfg)
    assert summary.converted == 4
    assert len(summary.swe_bench_refused) == 1 and "mixed or unknown styles" in summary.swe_bench_refused[0]
    result = validate(tmp_path / "converted.jsonl", tmp_path / "out", cfg)
    assert result.valid == 4
    runners = {i.extra["original_instance_id"]: i.extra["test_runner"]
               for i in read_instances(tmp_path / "out" / "instances.jsonl")}
    assert runners == {"pytest-dev__pytest-5103": "pytest", "django__django-11099": "django",
                       "django__django-11133": "django", "sympy__sympy-20590": "bare"}

    # the same Django id on a row that claims pytest (or an unknown runner) is quarantined
    converted = [json.loads(line) for line in (tmp_path / "converted.jsonl").read_text().splitlines()]
    django = next(r for r in converted if r.get("test_runner") == "django")
    wrong = [{**django, "instance_id": "django__django.00000000.pr_1", "test_runner": "pytest"},
             {**django, "instance_id": "django__django.00000000.pr_2", "test_runner": "nose"}]
    write_jsonl(tmp_path / "wrong.jsonl", wrong)
    bad = validate(tmp_path / "wrong.jsonl", tmp_path / "out2",
                   cfg.model_copy(update={"max_invalid_fraction": 1.0}))
    assert bad.valid == 0
    reasons = (tmp_path / "out2" / "quarantine.jsonl").read_text()
    assert "not pytest test ids" in reasons and "unknown test_runner 'nose'" in reasons


def test_id_styles_and_runners():
    from hrm.data.test_ids import bad_test_ids, id_style, runner_for

    assert id_style("tests/test_a.py::T::test_b[x y]") == "pytest"
    assert id_style("test_x (app.tests.T)") == "django"
    assert id_style("test_issue_123") == "bare"
    assert id_style("Checks that a thing works.") == "docstring"
    assert id_style("") is None and id_style("two\nlines here") is None
    assert runner_for(["test_x (a.B)", "A docstring name."]) == "django"
    assert runner_for(["test_a", "t.py::test_b"]) is None
    assert bad_test_ids(["test_a", "t.py::x"], "bare") == ["t.py::x"]


def test_a_django_row_is_not_run_by_the_pytest_sandbox():
    from hrm.data.instance import Instance
    from hrm.eval.execution import runner_refusal

    row = Instance(instance_id="django__django.0123abcd.pr_1", repo="swesmith/django__django.0123abcd",
                   patch="diff --git a/x.py b/x.py\n", FAIL_TO_PASS=["test_a (m.T)"], PASS_TO_PASS=[],
                   image_name="", problem_statement="p",
                   extra={"test_runner": "django"})
    assert runner_refusal(row) == "its tests need the django runner; this sandbox runs pytest only"
    assert runner_refusal(Instance(**{**row.__dict__, "extra": {}})) == ""
