"""GX does the checking where it has a native expectation: wrong types, nulls and missing
fields are each quarantined once with a reason naming the field; good rows in the same file
are kept; duplicates keep their first occurrence; the schema is the exact field set."""

from __future__ import annotations

import json

import pytest

from hrm.data.checks import CHECKS
from hrm.data.instance import read_instances
from hrm.data.schemas import SCHEMA_7, SCHEMA_9, SCHEMA_INCOMPLETE, classify
from hrm.data.validate import validate
from hrm.errors import StepFailed

from .conftest import write_jsonl


def _quarantine(out) -> dict[int, dict]:
    """{snapshot line: quarantine record}."""
    records = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    return {q["snapshot_line"]: q for q in records}


def _reasons(record: dict) -> dict[str, dict]:
    return {r["check"]: r for r in record["reasons"]}


def _with_surrogate(row: dict) -> dict:
    """The row with a lone surrogate inside a context line of its patch's first hunk."""
    patch = row["patch"]
    at = patch.index("\n ", patch.index("@@")) + 2
    return {**row, "patch": patch[:at] + "\ud800" + patch[at:]}


@pytest.fixture()
def lenient(data_cfg):
    return data_cfg.model_copy(update={"max_invalid_fraction": 1.0})


def test_wrong_types_nulls_and_missing_fields_each_get_one_clear_reason(sample_rows, lenient, tmp_path):
    good = [dict(r) for r in sample_rows[1:4]]
    # Each defect is made on a different sample row, so ids stay unique.
    base = iter(sample_rows[10:])

    def row(**changes):
        return {**next(base), **changes}

    six = next(base)
    bad = {
        "int_id": row(instance_id=12345),
        "null_id": row(instance_id=None),
        "null_patch": row(patch=None),
        "list_statement": row(problem_statement=["a", "list"]),
        "int_image": row(image_name=7),
        "null_image": row(image_name=None),
        "six_fields": {k: v for k, v in six.items() if k != "image_name"},
        "blank_statement": row(problem_statement=" \n\t\u00a0"),
        # A lone surrogate cannot reach GX's (Arrow-backed) regexes: only patch_utf8 fails,
        # and no expectation errors out.
        "surrogate_patch": _with_surrogate(next(base)),
    }
    expected = {
        "int_id": ({"instance_id_is_text"}, "instance_id is a int: 12345"),
        "null_id": ({"instance_id_not_null"}, "instance_id is null"),
        "null_patch": ({"patch_not_null"}, "patch is null"),
        "list_statement": ({"problem_statement_is_text"}, "problem_statement is a list"),
        "int_image": ({"image_name_is_text"}, "image_name is a int"),
        "null_image": ({"image_name_not_null"}, "image_name is null"),
        "six_fields": ({"schema"}, "missing fields ['image_name']"),
        "blank_statement": ({"statement_nonempty"}, "whitespace only"),
        "surrogate_patch": ({"patch_utf8"}, "lone surrogate"),
    }
    field_named = {"int_id": "instance_id", "null_id": "instance_id", "null_patch": "patch",
                   "list_statement": "problem_statement", "int_image": "image_name", "null_image": "image_name"}
    rows = good + list(bad.values())
    snap = write_jsonl(tmp_path / "snap.jsonl", rows)

    result = validate(snap, tmp_path / "out", lenient)
    assert result.errors == []  # GX evaluated every expectation
    assert (result.rows, result.valid, result.quarantined) == (len(rows), len(good), len(bad))
    quarantine = _quarantine(tmp_path / "out")
    for line, name in enumerate(bad, start=len(good) + 1):
        checks, detail = expected[name]
        reasons = _reasons(quarantine[line])
        assert set(reasons) == checks, name
        (reason,) = reasons.values()
        assert detail in reason["detail"], (name, reason)
        if name in field_named:
            assert reason["message"].startswith(field_named[name]), reason
    kept = read_instances(tmp_path / "out" / "instances.jsonl")
    assert [i.instance_id for i in kept] == [r["instance_id"] for r in good]

    # The native checks are GX's own: its result names the failing rows.
    gx_json = json.loads((tmp_path / "out" / "gx_result.json").read_text())
    by_check = {r["expectation_config"]["meta"]["check"]: r for r in gx_json["results"]}
    is_text = by_check["instance_id_is_text"]
    assert is_text["expectation_config"]["type"] == "expect_column_values_to_be_of_type"
    assert [i["_row_id"] for i in is_text["result"]["unexpected_index_list"]] == [len(good)]
    assert by_check["patch_not_null"]["expectation_config"]["type"] == "expect_column_values_to_not_be_null"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| id_wellformed | expect_column_values_to_match_regex | _str_instance_id | GX-native |" in report


def test_native_regex_checks_name_their_rows(sample_rows, lenient, tmp_path):
    base = sample_rows[5]
    rows = [
        dict(sample_rows[1]),
        {**base, "instance_id": "not-a-swe-smith-id"},
        {**base, "instance_id": base["instance_id"] + "\n"},  # `$` would accept this
        {**sample_rows[6], "patch": "--- a/x.py\n" + sample_rows[6]["patch"]},
        {**sample_rows[7], "patch": sample_rows[7]["patch"].rstrip("\n")},
        {**sample_rows[8], "problem_statement": ""},
    ]
    snap = write_jsonl(tmp_path / "snap.jsonl", rows)
    result = validate(snap, tmp_path / "out", lenient)
    assert result.errors == [] and result.valid == 1
    quarantine = _quarantine(tmp_path / "out")
    details = {line: {r["check"]: r["detail"] for r in q["reasons"]} for line, q in quarantine.items()}
    assert details == {
        2: {"id_wellformed": "malformed instance_id 'not-a-swe-smith-id'"},
        3: {"id_wellformed": f"malformed instance_id {base['instance_id'] + chr(10)!r}"},
        4: {"patch_starts_with_diff_git": f"starts with {rows[3]['patch'][:30]!r}"},
        5: {"patch_ends_with_newline": f"ends with {rows[4]['patch'][-30:]!r}"},
        6: {"statement_nonempty": "empty problem statement"},
    }


def test_duplicates_keep_the_first_and_gx_reports_every_copy(sample_rows, lenient, tmp_path):
    rows = [sample_rows[1], sample_rows[2], sample_rows[1], sample_rows[3], sample_rows[1]]
    snap = write_jsonl(tmp_path / "snap.jsonl", rows)
    result = validate(snap, tmp_path / "out", lenient)
    quarantine = _quarantine(tmp_path / "out")
    assert sorted(quarantine) == [3, 5]  # the later copies; the first occurrence is kept
    assert all(set(_reasons(q)) == {"id_unique"} for q in quarantine.values())
    assert "first seen at" in _reasons(quarantine[5])["id_unique"]["detail"]
    # GX's native uniqueness expectation marks all three copies; it is report-only.
    assert result.failures["id_unique"] == 2 and result.failures["id_copies"] == 3
    assert result.valid == 3 and not result.failed_table_checks
    assert "| id_copies | expect_column_values_to_be_unique | _str_instance_id | GX-native | report |" in (
        tmp_path / "out" / "report.md").read_text()


def test_a_field_no_row_has_fails_the_table_check(sample_rows, data_cfg, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "image_name"} for r in sample_rows[1:4]]
    snap = write_jsonl(tmp_path / "snap.jsonl", rows)
    with pytest.raises(StepFailed, match="table-level checks failed: table_columns"):
        validate(snap, tmp_path / "out", data_cfg)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["errors"] == [] and summary["failures"]["schema"] == 3


def test_schema_is_the_exact_field_set(sample_rows):
    seven = next(r for r in sample_rows if "created_at" not in r)
    assert classify(seven) == SCHEMA_7
    assert classify({**seven, "created_at": "t", "base_commit": "c"}) == SCHEMA_9
    assert classify({**seven, "some_extra": 1}) == SCHEMA_7  # extras are kept, not a schema change
    assert classify({**seven, "created_at": "t"}) == SCHEMA_INCOMPLETE  # half of the older schema
    assert classify({k: v for k, v in seven.items() if k != "image_name"}) == SCHEMA_INCOMPLETE
    assert classify(sample_rows[0]) == SCHEMA_9  # the sample's older-schema row


def test_every_check_is_gx_native_or_derived():
    native = {c.name for c in CHECKS if c.native}
    assert {"instance_id_not_null", "instance_id_is_text", "id_wellformed", "patch_not_null",
            "patch_starts_with_diff_git", "patch_ends_with_newline", "patch_no_nul",
            "statement_nonempty", "statement_size", "image_name_not_null", "id_copies"} <= native
    assert {"patch_parses", "patch_utf8", "id_unique", "repo_matches_id", "tests_disjoint"}.isdisjoint(native)
