"""Splits: grouped by edited function, deterministic, complete, clear errors."""

from __future__ import annotations

import json

import pytest

from hrm.config import SequencesConfig
from hrm.data.instance import Instance
from hrm.errors import InputError
from hrm.hunks import parse_patch
from hrm.splits import assign_splits, build_splits, instance_keys, load_splits


def _inst(iid: str, patch: str) -> Instance:
    return Instance(instance_id=iid, repo="swesmith/o__r.0000abcd", patch=patch,
                    problem_statement="p", FAIL_TO_PASS=["t"], PASS_TO_PASS=[])


def _patch(file: str, func: str, n: int = 1) -> str:
    return (f"--- a/{file}\n+++ b/{file}\n@@ -{n},2 +{n},2 @@ def {func}(x):\n"
            f"-    return {n}\n+    return -{n}\n     pass\n")


def test_no_instance_and_no_function_in_two_splits(instances, assignments):
    assert set(assignments) == {i.instance_id for i in instances}
    owner: dict[tuple[str, str, str], str] = {}
    for inst in instances:
        # keys computed here from the parsed hunks, not through the code under test
        keys = {(inst.repo, h.file, f) for h in parse_patch(inst.patch) for f in
                (h.function, *h.scopes)}
        assert keys and keys >= set(instance_keys(inst))
        for key in keys:
            split = assignments[inst.instance_id]
            assert owner.setdefault(key, split) == split, f"{key} in {owner[key]} and {split}"
    assert set(assignments.values()) == {"train", "val", "test"}


def test_stats_match_assignments(built, assignments):
    stats = json.loads((built["splits"].parent / "split_stats.json").read_text())
    for split in ("train", "val", "test"):
        assert stats[f"count_{split}"] == sum(1 for s in assignments.values() if s == split)
    doc = json.loads(built["splits"].read_text())
    assert stats["groups"] == len(doc["groups"])
    assert stats["largest_group"] == max(len(g["instances"]) for g in doc["groups"])
    assert stats["largest_group"] > 1  # the sample has instances editing the same function


def test_deterministic_and_seed_sensitive(sample_path, tmp_path, built):
    build_splits(sample_path, tmp_path / "again", SequencesConfig())
    assert (tmp_path / "again" / "splits.json").read_bytes() == built["splits"].read_bytes()
    build_splits(sample_path, tmp_path / "other", SequencesConfig(split_seed=99))
    assert load_splits(tmp_path / "other" / "splits.json") != load_splits(built["splits"])


def test_instances_sharing_a_function_transitively_share_a_split():
    # a-b share f, b-c share g: one group of three; the others are singletons.
    insts = [
        _inst("a", _patch("m.py", "f")),
        _inst("b", _patch("m.py", "f", 10) + _patch("n.py", "g")),
        _inst("c", _patch("n.py", "g", 20)),
    ] + [_inst(f"z{k}", _patch(f"z{k}.py", "h")) for k in range(20)]
    cfg = SequencesConfig(val_fraction=0.2, test_fraction=0.2)
    for seed in range(10):
        result = assign_splits(insts, cfg.model_copy(update={"split_seed": seed}))
        assert len({result.assignments[i] for i in "abc"}) == 1
        assert result.stats["largest_group"] == 3
        assert result.stats["count_val"] <= 5 and result.stats["count_test"] <= 5


def test_same_function_name_in_different_files_is_not_grouped():
    insts = [_inst("a", _patch("m.py", "f")), _inst("b", _patch("other.py", "f"))]
    result = assign_splits(insts, SequencesConfig())
    assert result.stats["groups"] == 2


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="missing.jsonl: instances file not found"):
        build_splits(tmp_path / "missing.jsonl", tmp_path / "out", SequencesConfig())
    dup = [_inst("a", _patch("m.py", "f")), _inst("a", _patch("m.py", "g"))]
    with pytest.raises(InputError, match="duplicate instance_id 'a'"):
        assign_splits(dup, SequencesConfig())
    bad = tmp_path / "splits.json"
    bad.write_text(json.dumps({"splits": {"x": "holdout"}}))
    with pytest.raises(InputError, match="unknown split 'holdout'"):
        load_splits(bad)
