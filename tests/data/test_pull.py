"""`pull`: local JSONL / JSON / parquet / directory sources through `datasets`, both schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hrm.data.instance import read_instances
from hrm.data.pull import pull
from hrm.data.validate import validate
from hrm.errors import InputError

from .conftest import write_jsonl


def _snapshot(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_real_sample_pulls_and_validates_all_valid(sample_path, sample_rows, data_cfg, tmp_path):
    snap = tmp_path / "data" / "instances.jsonl"
    summary = pull(str(sample_path), snap, data_cfg)
    assert summary.rows == 57 and summary.unreadable == [] and summary.swe_bench_refused == []
    assert summary.schemas == {"9 fields": 1, "7 fields": 56}
    rows = _snapshot(snap)
    assert [r["_source"]["line"] for r in rows] == list(range(1, 58))

    result = validate(snap, tmp_path / "validated", data_cfg)
    assert (result.rows, result.valid, result.quarantined) == (57, 57, 0)
    assert result.passed and sum(result.failures.values()) == 0
    instances = read_instances(tmp_path / "validated" / "instances.jsonl")
    assert [i.instance_id for i in instances] == [r["instance_id"] for r in sample_rows]
    for inst, raw in zip(instances, sample_rows, strict=True):
        assert inst.patch == raw["patch"]  # byte-identical: never stripped
        assert inst.FAIL_TO_PASS == raw["FAIL_TO_PASS"] and inst.PASS_TO_PASS == raw["PASS_TO_PASS"]
        assert "_source" not in inst.extra
    # The 9-field row keeps created_at and base_commit.
    assert instances[0].extra == {k: sample_rows[0][k] for k in ("created_at", "base_commit")}
    assert all(i.extra == {} for i in instances[1:])
    # Patches ending with a whitespace-only context line survive (they are not stripped).
    assert sum(1 for i in instances if i.patch.endswith("\n \n")) >= 3
    summary_json = json.loads((tmp_path / "validated" / "summary.json").read_text())
    assert summary_json["invalid_fraction"] == 0.0 and summary_json["passed"] is True


def test_json_encoded_test_lists_are_accepted(sample_rows, data_cfg, tmp_path):
    rows = [dict(r) for r in sample_rows[1:6]]
    for r in rows:
        r["FAIL_TO_PASS"] = json.dumps(r["FAIL_TO_PASS"])
        r["PASS_TO_PASS"] = json.dumps(r["PASS_TO_PASS"])
    src = write_jsonl(tmp_path / "encoded.jsonl", rows)
    snap = tmp_path / "snap.jsonl"
    pull(str(src), snap, data_cfg)
    assert all(isinstance(r["FAIL_TO_PASS"], list) for r in _snapshot(snap))
    result = validate(snap, tmp_path / "out", data_cfg)
    assert result.valid == 5
    assert read_instances(tmp_path / "out" / "instances.jsonl")[0].FAIL_TO_PASS == sample_rows[1]["FAIL_TO_PASS"]


def test_parquet_json_array_and_directory_sources(sample_rows, data_cfg, tmp_path, monkeypatch):
    import datasets

    # Nothing is written outside the project: no Arrow copy in the datasets cache.
    hf_cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    write_jsonl(src / "a.jsonl", sample_rows[:20])
    # Parquet pads the two extra fields of the 9-field row with nulls in the other rows.
    pd.DataFrame(sample_rows[:1] + sample_rows[20:40]).to_parquet(src / "nested" / "b.parquet")
    (src / "c.json").write_text(json.dumps(sample_rows[40:]), encoding="utf-8")
    (src / "notes.txt").write_text("ignored: not an input suffix")

    snap = tmp_path / "snap.jsonl"
    summary = pull(str(src), snap, data_cfg)
    assert summary.per_file == {str(src / "a.jsonl"): 20, str(src / "c.json"): 17,
                                str(src / "nested" / "b.parquet"): 21}
    rows = _snapshot(snap)
    parquet_rows = [r for r in rows if r["_source"]["file"].endswith("b.parquet")]
    assert parquet_rows[0]["created_at"] == sample_rows[0]["created_at"]
    assert all("created_at" not in r for r in parquet_rows[1:])  # padding nulls are not data
    assert [r["_source"]["line"] for r in parquet_rows] == list(range(1, 22))
    assert not hf_cache.exists() or not any(hf_cache.rglob("*"))

    result = validate(snap, tmp_path / "out", data_cfg)
    # The pandas row appears twice (a.jsonl and b.parquet): the second is a duplicate id.
    assert (result.rows, result.valid, result.quarantined) == (58, 57, 1)
    assert result.failures["id_unique"] == 1


def test_limit_and_repo_filter(sample_path, data_cfg, tmp_path):
    cfg = data_cfg.model_copy(update={"repo_filter": ["pandas"]})
    assert pull(str(sample_path), tmp_path / "a.jsonl", cfg).rows == 1
    cfg = data_cfg.model_copy(update={"repo_filter": ["tenacity"], "limit": 5})
    assert pull(str(sample_path), tmp_path / "b.jsonl", cfg).rows == 5
    rows = _snapshot(tmp_path / "b.jsonl")
    assert len(rows) == 5 and all("tenacity" in r["repo"] for r in rows)


def test_bad_sources_name_the_path(data_cfg, tmp_path):
    with pytest.raises(InputError, match="missing.jsonl: source not found"):
        pull(str(tmp_path / "missing.jsonl"), tmp_path / "s.jsonl", data_cfg)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"x\.csv: unsupported file type"):
        pull(str(tmp_path / "x.csv"), tmp_path / "s.jsonl", data_cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: directory holds no"):
        pull(str(tmp_path / "empty"), tmp_path / "s.jsonl", data_cfg)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="broken.parquet: cannot read parquet"):
        pull(str(tmp_path / "broken.parquet"), tmp_path / "s.jsonl", data_cfg)


@pytest.mark.hub
def test_hub_source(data_cfg, tmp_path):
    cfg = data_cfg.model_copy(update={"limit": 3})
    snap = tmp_path / "hub.jsonl"
    summary = pull("hf:SWE-bench/SWE-smith", snap, cfg)
    assert summary.rows == 3
    assert validate(snap, tmp_path / "out", cfg).valid == 3


def test_streaming_hub_path_offline(sample_rows, data_cfg):
    """The hub path (an IterableDataset, as `streaming=True` returns) through the shared steps."""
    from datasets import Dataset

    from hrm.data.pull import PullSummary, _select, snapshot_row
    from hrm.data.sources import _wrap_rows

    stream = Dataset.from_list(sample_rows[1:]).to_iterable_dataset()
    cfg = data_cfg.model_copy(update={"limit": 4, "repo_filter": ["tenacity"]})
    summary = PullSummary("hf:x/y", "unused")
    out = [snapshot_row(e, cfg, summary) for e in _select(_wrap_rows(stream, "hf:x/y[train]"), cfg)]
    assert [r["_source"] for r in out] == [{"file": "hf:x/y[train]", "line": i} for i in range(1, 5)]
    assert [r["patch"] for r in out] == [r["patch"] for r in sample_rows[1:5]]


def test_json_array_with_a_broken_element_keeps_the_others(sample_rows, data_cfg, tmp_path):
    rows = sample_rows[:6]
    text = json.dumps(rows, indent=1)
    good = json.dumps(rows[2], indent=1).replace("\n", "\n ")
    assert good in text
    # element 3 loses a value: `"repo": ,` (not valid JSON); every other element is intact
    broken = good.replace(json.dumps(rows[2]["repo"]), "", 1)
    src = tmp_path / "rows.json"
    src.write_text(text.replace(good, broken, 1), encoding="utf-8")

    snap = tmp_path / "snap.jsonl"
    summary = pull(str(src), snap, data_cfg)
    assert summary.rows == 6 and len(summary.unreadable) == 1
    assert summary.unreadable[0].startswith(f"{src}:3: array element 3 (line ")
    assert "not valid JSON" in summary.unreadable[0]

    result = validate(snap, tmp_path / "out", data_cfg.model_copy(
        update={"max_invalid_fraction": 0.5}))
    assert (result.rows, result.valid, result.quarantined) == (6, 5, 1)
    kept = [i.instance_id for i in read_instances(tmp_path / "out" / "instances.jsonl")]
    assert kept == [r["instance_id"] for k, r in enumerate(rows) if k != 2]
    (quarantined,) = [json.loads(line) for line in
                      (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert quarantined["source"] == {"file": str(src), "line": 3}
    assert "array element 3" in json.dumps(quarantined["reasons"])


@pytest.mark.parametrize("text", [
    '[{"a": 1}, {"b": "\xff"}, {"c": 3}]',  # replaced by invalid UTF-8 below
    '[{"a": 1}, 7, {"c": 3}]',
    '[{"a": 1}, {"b": [1, 2}, {"c": 3}]',
])
def test_json_array_element_errors_are_per_element(tmp_path, text):
    from hrm.data.sources import _json_array_records

    path = tmp_path / "a.json"
    path.write_bytes(text.encode("utf-8").replace("\xff".encode(), b"\xff"))
    records = _json_array_records(path)
    assert [r.row for r in records] == [{"a": 1}, None, {"c": 3}]
    assert [r.line for r in records] == [1, 2, 3]
    assert records[1].error.startswith("array element 2")


def test_truncated_json_array_is_reported(tmp_path):
    from hrm.data.sources import _json_array_records

    path = tmp_path / "a.json"
    path.write_text('[{"a": 1}, {"b": 2}')
    records = _json_array_records(path)
    assert [r.row for r in records[:2]] == [{"a": 1}, {"b": 2}]
    assert "ends inside the array" in records[2].error
