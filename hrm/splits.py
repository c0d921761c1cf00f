"""Train/val/test assignment by instance, grouped so no edited function spans two splits.

Two instances that edit the same function are near-duplicates from the model's point of view
(same surrounding code, often the same lines), so they are joined into one group and a group goes
to exactly one split. The grouping is deliberately conservative: the unit is the TOP-LEVEL block
(module-level def/class, decorators included) that contains a change, so a method, its class and
every other method of that class fall in one group. A patch only shows a few lines of context, so
that block is identified in two independent ways and union-find joins instances sharing EITHER:

- by name: the top-level name of every scope a changed line touches (`hrm.hunks.Hunk.scopes`,
  seeded by git's `@@ ... @@ class X` header); module-level changes share `<module>` per file;
- by position: all instances of one repo snapshot (same `repo`, and `base_commit` when given)
  edit the same original file, so the original-side lines of every hunk of every instance are
  pooled into a partial copy of that file; each changed line (`Hunk.changed_lines`) is keyed by
  the nearest known line above it that starts a top-level block (an unindented statement, the
  first of a decorator chain). Two lines in one block always get the same key, whatever the
  header says (a `diff=python` header may name a nested def only). Pooled lines that disagree
  (instances from different snapshots under one repo name) disable this for that file, with a
  warning in the stats.

Non-Python files are one group per file. Groups of a repository in `held_out_repos` never go to
train: they are dealt to val and test in turn (shuffled with the seed; val gets
`held_out_val_share` of them), so val and test also measure a repository the model never saw. The other groups are shuffled with a fixed seed and
filled into test, then val, never past their targets (the fractions of the OTHER repositories'
instances); what does not fit goes to train. The result depends only on the instances (ids,
repos and patches), the held-out repositories and the seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from hrm.config import Params, SequencesConfig
from hrm.data.instance import Instance, read_instances
from hrm.errors import InputError
from hrm.hunks import MODULE_SCOPE, Hunk, parse_patch
from hrm.json_input import read_json_strict

SPLITS = ("train", "val", "test")
SPLITS_FILE = "splits.json"
STATS_FILE = "split_stats.json"

GroupKey = tuple[str, str, str]
"""(repo, file, block) edited by some hunk: block is a top-level name (`Class`, `func`,
`<module>`), `line N` (the top-level block starting at original line N; `line N @commit` for rows
with a `base_commit`), or `<file>` for a non-Python file."""

PYTHON_SUFFIXES = (".py", ".pyi", ".pyx")
FILE_SCOPE = "<file>"


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


Space = tuple[str, str, str]
"""(repo, base_commit or "", file): one original file, in whose line numbers hunks agree."""


def _space(instance: Instance, file: str) -> Space:
    base = instance.extra.get("base_commit")
    return (instance.repo, base if isinstance(base, str) else "", file)


def _is_python(file: str) -> bool:
    return file.endswith(PYTHON_SUFFIXES)


def _starts_statement(text: str) -> bool:
    """An unindented line that is not blank, a comment or a closing bracket."""
    return bool(text.strip()) and not text[0].isspace() and not text.startswith(
        ("#", ")", "]", "}"))


@dataclass
class LineIndex:
    """Original-file lines pooled from the hunks of many instances, per `Space`."""

    lines: dict[Space, dict[int, str]] = field(default_factory=dict)
    conflicts: set[Space] = field(default_factory=set)
    _starts: dict[Space, list[int]] = field(default_factory=dict)

    def add(self, instance: Instance, hunks: list[Hunk]) -> None:
        for hunk in hunks:
            if not _is_python(hunk.file):
                continue
            space = _space(instance, hunk.file)
            known = self.lines.setdefault(space, {})
            for offset, text in enumerate(hunk.fixed_text.split("\n")):
                number = hunk.fixed_start + offset
                if offset == hunk.fixed_text.count("\n") and not text:
                    break  # the empty tail after the last newline
                if known.setdefault(number, text) != text:
                    self.conflicts.add(space)
            self._starts.pop(space, None)

    def block_start(self, space: Space, line: int) -> int | None:
        """Nearest known top-level block start at or above `line` (0: none known), or None when
        the pooled lines of `space` disagree."""
        if space in self.conflicts:
            return None
        starts = self._starts.get(space)
        if starts is None:
            known = self.lines.get(space, {})
            starts = [
                n for n, text in sorted(known.items())
                # the first line of a decorator chain starts the block, not the def below it
                if _starts_statement(text) and not known.get(n - 1, "").startswith("@")
            ]
            self._starts[space] = starts
        k = bisect_right(starts, line)
        return starts[k - 1] if k else 0


def instance_keys(instance: Instance, index: LineIndex | None = None,
                  hunks: list[Hunk] | None = None) -> list[GroupKey]:
    """The group keys of every top-level block the instance's hunks touch (see module doc).

    Without `index`, only this instance's own lines are pooled (position keys still apply).
    """
    if hunks is None:
        hunks = parse_patch(instance.patch, source=instance.instance_id)
    if index is None:
        index = LineIndex()
        index.add(instance, hunks)
    keys: list[GroupKey] = []
    for hunk in hunks:
        if not _is_python(hunk.file):
            keys.append((instance.repo, hunk.file, FILE_SCOPE))
            continue
        for scope in hunk.scopes or (hunk.function,):
            top = scope.split(".", 1)[0] if scope != MODULE_SCOPE else scope
            keys.append((instance.repo, hunk.file, top))
        space = _space(instance, hunk.file)
        suffix = f" @{space[1]}" if space[1] else ""
        for line in hunk.changed_lines:
            start = index.block_start(space, line)
            if start is not None:
                keys.append((instance.repo, hunk.file, f"line {start}{suffix}"))
    return list(dict.fromkeys(keys))


def _line_index(instances: list[Instance]) -> tuple[LineIndex, dict[str, list[Hunk]]]:
    index = LineIndex()
    hunks_of: dict[str, list[Hunk]] = {}
    for inst in instances:
        hunks = parse_patch(inst.patch, source=inst.instance_id)
        hunks_of[inst.instance_id] = hunks
        index.add(inst, hunks)
    return index, hunks_of


def group_instances(instances: list[Instance]) -> list[Group]:
    """Union-find over shared keys; groups ordered by their smallest instance id."""
    index, hunks_of = _line_index(instances)
    return _group(instances, index, hunks_of)


def _group(instances: list[Instance], index: LineIndex, hunks_of: dict[str, list[Hunk]],
           ) -> list[Group]:
    uf = _UnionFind()
    keys_of: dict[str, list[GroupKey]] = {}
    for inst in instances:
        keys = instance_keys(inst, index, hunks_of[inst.instance_id])
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
    index, hunks_of = _line_index(instances)
    groups = _group(instances, index, hunks_of)
    repo_of = {inst.instance_id: inst.repo for inst in instances}
    held = set(cfg.held_out_repos)

    def held_out(group: Group) -> bool:
        return any(repo_of[i] in held for i in group.instance_ids)

    n = len(instances)
    n_rest = sum(len(g.instance_ids) for g in groups if not held_out(g))
    targets = {
        "test": math.floor(cfg.test_fraction * n_rest + 0.5),
        "val": math.floor(cfg.val_fraction * n_rest + 0.5),
    }
    order = list(groups)
    random.Random(cfg.split_seed).shuffle(order)
    counts = {s: 0 for s in SPLITS}
    assigned: list[tuple[Group, str]] = []
    held_counts = {"val": 0, "test": 0}
    share = cfg.held_out_val_share
    for group in [g for g in order if held_out(g)]:
        # Dealt in turn, to the side furthest below its share (val first on a tie).
        total = held_counts["val"] + held_counts["test"] + len(group.instance_ids)
        split = "val" if held_counts["val"] - share * total <= held_counts["test"] - (1 - share) * total \
            else "test"
        held_counts[split] += len(group.instance_ids)
        counts[split] += len(group.instance_ids)
        assigned.append((group, split))
    for group in [g for g in order if not held_out(g)]:
        size = len(group.instance_ids)
        split = "train"
        for candidate in ("test", "val"):
            if counts[candidate] - held_counts[candidate] + size <= targets[candidate]:
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
    warnings += [
        f"{repo} {file}{' @' + base if base else ''}: hunks disagree on the original lines, so "
        "that file is grouped by names only (rows from different commits under one repo?)"
        for repo, base, file in sorted(index.conflicts)
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
        "held_out_repos": sorted(held),
        "held_out_val": held_counts["val"],
        "held_out_test": held_counts["test"],
        "warnings": warnings,
    }
    return SplitResult(assignments=assignments, groups=assigned, stats=stats)


def build_splits(instances_path: str | Path, out_dir: str | Path, cfg: SequencesConfig, *,
                 tracking: Params | None = None) -> dict:
    """Step: read instances, assign splits, write `splits.json` and `split_stats.json`, and with
    `tracking` log them (`hrm.step_tracking`).

    Returns the stats written to `split_stats.json`.
    """
    started = time.time()
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
        "held_out_repos": sorted(cfg.held_out_repos),
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
    if tracking is not None:
        from hrm.step_tracking import log_split

        log_split(tracking, result.stats, started)
    return result.stats


def load_splits(path: str | Path) -> dict[str, str]:
    """Read `splits.json` into {instance_id: split}; raises InputError naming the file."""
    path = Path(path)
    doc = read_json_strict(path, missing="splits file not found")
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
