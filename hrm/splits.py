"""Train/val/test assignment by instance, grouped so no edited function spans two splits.

Two instances that edit the same (repo, file, function) are near-duplicates from the model's
point of view (same surrounding code, often the same lines), so they are joined into one group
(union-find over every scope each hunk touches, see `hrm.hunks.Hunk.scopes`) and a group goes to
exactly one split. Groups are shuffled with a fixed seed and filled into test, then val, never past
their target size; what does not fit goes to train. The result depends only on the instances
(ids and patches) and the seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from hrm.config import SequencesConfig
from hrm.data.instance import Instance, read_instances
from hrm.errors import InputError
from hrm.hunks import parse_patch

SPLITS = ("train", "val", "test")
SPLITS_FILE = "splits.json"
STATS_FILE = "split_stats.json"

GroupKey = tuple[str, str, str]
"""(repo, file, function) edited by some hunk."""


@dataclass(frozen=True)
class Group:
    """Instances that share at least one edited function (transitively)."""

    index: int
    instance_ids: tuple[str, ...]
    keys: tuple[GroupKey, ...]


@dataclass(frozen=True)
class SplitResult:
    assignments: dict[str, str]
    """instance_id -> split."""
    groups: list[tuple[Group, str]]
    """Each group with its split."""
    stats: dict[str, object]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def instance_keys(instance: Instance) -> list[GroupKey]:
    """(repo, file, function) for every scope the instance's hunks touch."""
    keys: list[GroupKey] = []
    for hunk in parse_patch(instance.patch, source=instance.instance_id):
        for scope in hunk.scopes or (hunk.function,):
            keys.append((instance.repo, hunk.file, scope))
    return list(dict.fromkeys(keys))


def group_instances(instances: list[Instance]) -> list[Group]:
    """Union-find over shared keys; groups ordered by their smallest instance id."""
    uf = _UnionFind()
    keys_of: dict[str, list[GroupKey]] = {}
    for inst in instances:
        keys = instance_keys(inst)
        keys_of[inst.instance_id] = keys
        uf.find(("i", inst.instance_id))
        for key in keys:
            uf.union(("i", inst.instance_id), ("k", *key))
    members: dict[object, list[str]] = {}
    for inst in instances:
        members.setdefault(uf.find(("i", inst.instance_id)), []).append(inst.instance_id)
    ordered = sorted((sorted(ids) for ids in members.values()), key=lambda ids: ids[0])
    groups = []
    for index, ids in enumerate(ordered):
        keys = sorted({k for i in ids for k in keys_of[i]})
        groups.append(Group(index=index, instance_ids=tuple(ids), keys=tuple(keys)))
    return groups


def assign_splits(instances: list[Instance], cfg: SequencesConfig) -> SplitResult:
    """Group, shuffle the groups with `cfg.split_seed`, fill test and val up to their targets."""
    seen: set[str] = set()
    for inst in instances:
        if inst.instance_id in seen:
            raise InputError(f"duplicate instance_id {inst.instance_id!r}")
        seen.add(inst.instance_id)
    groups = group_instances(instances)
    n = len(instances)
    targets = {
        "test": math.floor(cfg.test_fraction * n + 0.5),
        "val": math.floor(cfg.val_fraction * n + 0.5),
    }
    order = list(groups)
    random.Random(cfg.split_seed).shuffle(order)
    counts = {s: 0 for s in SPLITS}
    assigned: list[tuple[Group, str]] = []
    for group in order:
        size = len(group.instance_ids)
        split = "train"
        for candidate in ("test", "val"):
            if counts[candidate] + size <= targets[candidate]:
                split = candidate
                break
        counts[split] += size
        assigned.append((group, split))
    assigned.sort(key=lambda gs: gs[0].index)
    assignments = {i: split for group, split in assigned for i in group.instance_ids}
    sizes = [len(g.instance_ids) for g in groups]
    warnings = [
        f"split '{s}' is empty although its fraction is {getattr(cfg, s + '_fraction')}"
        for s in ("val", "test")
        if counts[s] == 0 and getattr(cfg, s + "_fraction") > 0
    ]
    stats: dict[str, object] = {
        "instances": n,
        "groups": len(groups),
        "largest_group": max(sizes, default=0),
        "multi_instance_groups": sum(1 for s in sizes if s > 1),
        "count_train": counts["train"],
        "count_val": counts["val"],
        "count_test": counts["test"],
        "groups_train": sum(1 for _, s in assigned if s == "train"),
        "groups_val": sum(1 for _, s in assigned if s == "val"),
        "groups_test": sum(1 for _, s in assigned if s == "test"),
        "target_val": targets["val"],
        "target_test": targets["test"],
        "warnings": warnings,
    }
    return SplitResult(assignments=assignments, groups=assigned, stats=stats)


def build_splits(instances_path: str | Path, out_dir: str | Path, cfg: SequencesConfig) -> dict:
    """Step: read instances, assign splits, write `splits.json` and `split_stats.json`.

    Returns the stats written to `split_stats.json`.
    """
    instances_path = Path(instances_path)
    if not instances_path.is_file():
        raise InputError("instances file not found", path=str(instances_path))
    instances = read_instances(instances_path)
    if not instances:
        raise InputError("no instances", path=str(instances_path))
    result = assign_splits(instances, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "seed": cfg.split_seed,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "instances_sha256": hashlib.sha256(instances_path.read_bytes()).hexdigest(),
        "splits": result.assignments,
        "groups": [
            {
                "group": group.index,
                "split": split,
                "instances": list(group.instance_ids),
                "keys": [list(k) for k in group.keys],
            }
            for group, split in result.groups
        ],
    }
    (out_dir / SPLITS_FILE).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    (out_dir / STATS_FILE).write_text(json.dumps(result.stats, indent=1) + "\n")
    return result.stats


def load_splits(path: str | Path) -> dict[str, str]:
    """Read `splits.json` into {instance_id: split}; raises InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("splits file not found", path=str(path))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err}", path=str(path)) from None
    splits = doc.get("splits") if isinstance(doc, dict) else None
    if not isinstance(splits, dict):
        raise InputError("missing mapping 'splits'", path=str(path))
    bad = {k: v for k, v in splits.items() if v not in SPLITS}
    if bad:
        first = next(iter(bad.items()))
        raise InputError(f"field 'splits': unknown split {first[1]!r} for {first[0]!r}",
                         path=str(path))
    return dict(splits)


def check_coverage(instances: list[Instance], splits: dict[str, str], splits_path: str | Path,
                   ) -> None:
    """Every instance must have a split: a stale splits file is an error, not a silent skip."""
    missing = [i.instance_id for i in instances if i.instance_id not in splits]
    if missing:
        raise InputError(
            f"{len(missing)} instance(s) have no split (first: {missing[0]!r}); "
            "re-run `hrm sequences split`",
            path=str(splits_path),
        )
