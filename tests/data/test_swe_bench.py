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
