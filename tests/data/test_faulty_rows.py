"""Row-level faults that used to crash `hrm data pull` (or validation) and lose every valid row:
each is now one quarantined row with file, line and reason, and every valid row is kept."""

from __future__ import annotations

import json

import pytest

from hrm.data.pull import pull
from hrm.data.validate import validate


def _line(row: dict, **changes) -> str:
    return json.dumps({**row, **changes}) + "\n"


# (case, bad line builder(row) -> text, reason the quarantine must give)
FAULTS = [
    ("5000-digit number", lambda r: _line(r).replace('"FAIL_TO_PASS"', '"n": ' + "9" * 5000 + ', "FAIL_TO_PASS"', 1),
     "a number cannot be read: Exceeds the limit (4300 digits)"),
    ("nested 900 deep", lambda r: _line(r)[:-2] + ', "extra": ' + "[" * 900 + "]" * 900 + "}\n",
     "nested deeper than 64 levels"),
    ("not an object", lambda r: "[1, 2, 3]\n", "not a JSON object (got list)"),
    ("cut JSON", lambda r: _line(r)[:200] + "\n", "not valid JSON"),
]


@pytest.mark.parametrize("case,build,reason", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_faulty_row_is_quarantined_and_the_valid_rows_kept(case, build, reason, sample_rows,
                                                           data_cfg, tmp_path):
    good = sample_rows[:4]
    text = "\ufeff" + "".join(_line(r) for r in good[:2]) + build(good[2]) + _line(good[3])
    src = tmp_path / "in.jsonl"
    src.write_text(text, encoding="utf-8", errors="surrogatepass")
    summary = pull(str(src), tmp_path / "snap.jsonl", data_cfg)
    assert summary.rows == 4 and len(summary.unreadable) == 1
    assert summary.unreadable[0].startswith(f"{src}:3: ") and reason in summary.unreadable[0]
    cfg = data_cfg.model_copy(update={"max_invalid_fraction": 0.5})
    result = validate(tmp_path / "snap.jsonl", tmp_path / "out", cfg)
    assert result.valid == 3  # the BOM before row 1 costs nothing
    quarantined = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantined) == 1 and reason in json.dumps(quarantined[0])


def test_empty_and_blank_files_beside_good_ones_are_warnings(sample_rows, data_cfg, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_empty.jsonl").write_text("")
    (folder / "b_blank.jsonl").write_text("\n  \n\n")
    (folder / "c_good.jsonl").write_text("".join(_line(r) for r in sample_rows[:3]))
    summary = pull(str(folder), tmp_path / "snap.jsonl", data_cfg)
    assert summary.rows == 3 and summary.unreadable == []
    assert summary.empty_files == [str(folder / "a_empty.jsonl"), str(folder / "b_blank.jsonl")]
    alone = pull(str(folder / "a_empty.jsonl"), tmp_path / "none.jsonl", data_cfg)
    assert alone.rows == 0 and alone.empty_files == [str(folder / "a_empty.jsonl")]


def test_a_lone_surrogate_is_kept_for_validation_to_name_the_field(sample_rows, data_cfg,
                                                                   tmp_path):
    """Pull keeps the row (escaped in the snapshot: a surrogate is not UTF-8); validation
    quarantines it with the field's own check; the valid rows are kept."""
    good = sample_rows[:3]
    src = tmp_path / "in.jsonl"
    src.write_text(_line(good[0]) + _line(good[1], problem_statement="a\ud800b") + _line(good[2]),
                   encoding="utf-8", errors="surrogatepass")
    summary = pull(str(src), tmp_path / "snap.jsonl", data_cfg)
    assert summary.rows == 3 and summary.unreadable == []
    assert "\\ud800" in (tmp_path / "snap.jsonl").read_text(encoding="utf-8")
    cfg = data_cfg.model_copy(update={"max_invalid_fraction": 0.5})
    result = validate(tmp_path / "snap.jsonl", tmp_path / "out", cfg)
    assert result.valid == 2
    reasons = (tmp_path / "out" / "quarantine.jsonl").read_text()
    assert "problem_statement" in reasons
