"""A corrupted copy of the real sample: exactly the defective rows are quarantined, each with
its reason; the good rows are kept; the step fails above the threshold (function and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hrm.data.instance import read_instances
from hrm.data.pull import pull
from hrm.data.validate import validate
from hrm.errors import StepFailed

BINARY_PATCH = (
    "diff --git a/docs/logo.png b/docs/logo.png\n"
    "index 1111111..2222222 100644\n"
    "Binary files a/docs/logo.png and b/docs/logo.png differ\n"
)


DOTDOT_SECTION = (
    "diff --git a/../../etc/passwd b/../../etc/passwd\n"
    "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+toor\n"
)
ABSOLUTE_SECTION = (
    "diff --git a//etc/passwd b//etc/passwd\n"
    "--- a//etc/passwd\n+++ b//etc/passwd\n@@ -1 +1 @@\n-root\n+toor\n"
)
SYMLINK_SECTION = (
    "diff --git a/tenacity/link b/tenacity/link\nnew file mode 120000\nindex 0000000..1111111\n"
    "--- /dev/null\n+++ b/tenacity/link\n@@ -0,0 +1 @@\n+/etc/shadow\n"
)


def _dump(row: dict) -> bytes:
    return json.dumps(row).encode()


def build_corrupted(lines: list[bytes], rows: list[dict], path: Path) -> dict[int, set[str]]:
    """Write sample + defects to `path`; return {1-based line: the checks it must fail}."""
    out = list(lines)
    expected: dict[int, set[str]] = {}

    def edit(index: int, checks: set[str], **changes) -> None:
        row = dict(rows[index])
        row.update(changes)
        out[index] = _dump(row)
        expected[index + 1] = checks

    edit(3, {"id_wellformed"}, instance_id="tenacity-bug-3")
    edit(4, {"statement_nonempty"}, problem_statement="")
    edit(5, {"f2p_nonempty_list"}, FAIL_TO_PASS=rows[5]["FAIL_TO_PASS"][0])  # a bare string
    edit(6, {"tests_disjoint"}, PASS_TO_PASS=rows[6]["PASS_TO_PASS"] + rows[6]["FAIL_TO_PASS"][:1])
    edit(7, {"patch_no_binary", "patch_parses"}, patch=BINARY_PATCH)
    edit(8, {"patch_ends_with_newline"}, patch=rows[8]["patch"][:-1])
    # Each hostile file section appended to a real patch: the row still parses, and only the
    # path check fails (git apply would write outside the repository, or a link to anywhere).
    for index, section in ((14, DOTDOT_SECTION), (15, ABSOLUTE_SECTION), (16, SYMLINK_SECTION)):
        edit(index, {"patch_paths_inside"}, patch=rows[index]["patch"] + section)
    patch = rows[10]["patch"]
    at = patch.index("\n ", patch.index("@@")) + 2  # inside a context line of the first hunk
    edit(10, {"patch_no_nul"}, patch=patch[:at] + "\x00" + patch[at:])
    edit(11, {"repo_matches_id"}, repo="swesmith/jd__tenacity.deadbeef")
    # A SWE-bench row: SWE-bench id and fields, the patch being the fix.
    swe_bench = {k: v for k, v in rows[12].items() if k != "image_name"}
    swe_bench.update(instance_id="jd__tenacity-482", repo="jd/tenacity", base_commit="0d40e76f" * 5,
                     test_patch="", version="9.0", environment_setup_commit="0d40e76f" * 5)
    out[12] = _dump(swe_bench)
    expected[13] = {"schema", "id_wellformed"}
    # Invalid UTF-8 inside a line (inside the problem statement string).
    raw = out[9]
    cut = raw.index(b'"problem_statement": "') + len(b'"problem_statement": "') + 5
    out[9] = raw[:cut] + b"\xff\xfe" + raw[cut:]
    expected[10] = {"readable"}
    # A duplicate of row 2's id (a later copy); the first occurrence stays valid.
    out.append(lines[1])
    expected[len(out)] = {"id_unique"}
    # A truncated final line (the file ends inside it, no newline).
    out.append(lines[20][: len(lines[20]) // 2])
    expected[len(out)] = {"readable"}
    path.write_bytes(b"\n".join(out))
    return expected


@pytest.fixture()
def corrupted(sample_lines, sample_rows, tmp_path):
    src = tmp_path / "corrupted.jsonl"
    expected = build_corrupted(sample_lines, sample_rows, src)
    return src, expected


def test_exactly_the_defective_rows_are_quarantined(corrupted, sample_rows, data_cfg, tmp_path):
    src, expected = corrupted
    snap = tmp_path / "snap.jsonl"
    summary = pull(str(src), snap, data_cfg)
    assert summary.rows == 59  # every line kept, readable or not
    assert [u.split(": ", 1)[0] for u in summary.unreadable] == [f"{src}:10", f"{src}:59"]
    assert "truncated" in summary.unreadable[1]
    assert summary.swe_bench_refused == [f"{src}:13"]

    out = tmp_path / "validated"
    with pytest.raises(StepFailed) as info:
        validate(snap, out, data_cfg)
    message = str(info.value)
    assert "15/59 rows quarantined" in message and "id_unique (1 rows)" in message and "patch_paths_inside (3 rows)" in message
    # the first quarantined rows by file and line, with their checks, and where the rest are
    assert f"first quarantined rows:\n  {src}:" in message and "... and 10 more" in message
    assert f"{src}:4: id_wellformed (malformed instance_id 'tenacity-bug-3')" in message
    assert f"{src}:8: patch_parses (1 files, 0 hunks); patch_no_binary" in message
    assert f"every row and reason: {out}/quarantine.jsonl" in message

    quarantine = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    got = {q["source"]["line"]: {r["check"] for r in q["reasons"]} for q in quarantine}
    assert got == expected
    assert all(q["source"]["file"] == str(src) for q in quarantine)
    by_line = {q["source"]["line"]: q for q in quarantine}
    assert "first seen at" in by_line[58]["reasons"][0]["detail"]
    assert by_line[10]["row"] is None and by_line[10]["raw_b64"]
    assert "SWE-bench" in next(r["detail"] for r in by_line[13]["reasons"] if r["check"] == "schema")

    valid = read_instances(out / "instances.jsonl")
    bad_ids = {sample_rows[line - 1]["instance_id"] for line in expected if line <= 57} - {
        sample_rows[1]["instance_id"]}
    assert len(valid) == 44
    assert {v.instance_id for v in valid} == {r["instance_id"] for r in sample_rows} - bad_ids

    summary_json = json.loads((out / "summary.json").read_text())
    assert summary_json["quarantined"] == 15 and summary_json["passed"] is False
    assert summary_json["invalid_fraction"] == pytest.approx(15 / 59, abs=1e-6)
    assert summary_json["failures"]["readable"] == 2
    gx_json = json.loads((out / "gx_result.json").read_text())
    assert gx_json["success"] is False and len(gx_json["results"]) == 2 + len(summary_json["failures"])
    report = (out / "report.md").read_text()
    assert "FAILED" in report and f"{src}:58" in report and "| patch_no_nul |" in report

    # Above the threshold the same data passes: the threshold is what decides.
    result = validate(snap, tmp_path / "lenient", data_cfg.model_copy(update={"max_invalid_fraction": 0.3}))
    assert result.passed and result.valid == 44


def test_cli_exits_nonzero_and_mostly_bounds(corrupted, data_cfg, tiny_params_file, tmp_path):
    from hrm.cli import app

    src, _ = corrupted
    snap, out = tmp_path / "snap.jsonl", tmp_path / "validated"
    runner = CliRunner()
    pulled = runner.invoke(app, ["data", "pull", str(src), "--out", str(snap), "--params", str(tiny_params_file)])
    assert pulled.exit_code == 0, pulled.output
    assert f"unreadable (kept, validation quarantines it): {src}:10" in pulled.output
    res = runner.invoke(app, ["data", "validate", "--snapshot", str(snap), "--out", str(out), "--no-track",
                              "--params", str(tiny_params_file)])
    assert res.exit_code != 0 and isinstance(res.exception, StepFailed)
    assert "15 quarantined" in res.output

    # A size bound with `mostly`: too many long patches fail the step as a table-level check.
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join(src.read_bytes().split(b"\n")[13:40]) + b"\n")  # defect-free lines
    cfg = data_cfg.model_copy(update={"max_patch_lines": 25, "max_invalid_fraction": 1.0})
    with pytest.raises(StepFailed, match="table-level checks failed: patch_size"):
        validate(clean, tmp_path / "sizes", cfg)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(StepFailed, match="the snapshot holds no rows"):
        validate(empty, tmp_path / "empty", data_cfg)
