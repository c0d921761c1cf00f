"""The SWE-smith task instance: one typed record, parsed id, JSONL read/write.

In SWE-smith, `patch` INTRODUCES the bug; the fix is its reverse. Every step after
validation reads instances through `read_instances` and never touches raw rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hrm.errors import InputError

CORE_FIELDS = (
    "instance_id",
    "repo",
    "patch",
    "problem_statement",
    "FAIL_TO_PASS",
    "PASS_TO_PASS",
    "image_name",
)

# {owner}__{repo}.{commit8}.{bug_type}__{hash8} or {owner}__{repo}.{commit8}.pr_{N};
# the repo name may contain dots, so the commit and bug type are taken from the right. Owner and
# name use GitHub's characters only (letters, digits, '-', and '.', '_' in names): ids become
# file names and command arguments, so '/', shell metacharacters and whitespace never pass.
_ID_RE = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)__(?P<name>[A-Za-z0-9_.-]+)\.(?P<commit>[0-9a-f]{7,40})\."
    r"(?P<bug>(?:[A-Za-z0-9_]+__[A-Za-z0-9]{6,}|pr_\d+))$"
)


@dataclass(frozen=True)
class InstanceId:
    owner: str
    name: str
    commit: str
    bug_type: str
    """`lm_rewrite`, `func_pm_op_swap`, ..., or `pr_<N>` for PR mirrors."""

    @property
    def is_pr(self) -> bool:
        return self.bug_type.startswith("pr_")

    @property
    def repo(self) -> str:
        """The SWE-smith repo id this instance belongs to."""
        return f"swesmith/{self.owner}__{self.name}.{self.commit}"


def parse_instance_id(instance_id: str) -> InstanceId:
    """Parse a SWE-smith instance id; raises ValueError naming the id when malformed."""
    m = _ID_RE.match(instance_id or "")
    if not m:
        raise ValueError(f"malformed instance_id {instance_id!r}")
    bug = m["bug"]
    bug_type = bug if bug.startswith("pr_") else bug.rsplit("__", 1)[0]
    return InstanceId(m["owner"], m["name"], m["commit"], bug_type)


@dataclass(frozen=True)
class Instance:
    instance_id: str
    repo: str
    patch: str
    """Bug-introducing unified diff (SWE-smith convention)."""
    problem_statement: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    image_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields beyond the core schema (e.g. created_at, base_commit), kept as they came."""

    @property
    def parsed_id(self) -> InstanceId:
        return parse_instance_id(self.instance_id)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        extra = row.pop("extra")
        return {**row, **extra}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instance:
        """Build from a normalised row (test lists already lists); unknown keys go to `extra`."""
        missing = [k for k in CORE_FIELDS if k not in row and k != "image_name"]
        if missing:
            raise ValueError(f"missing fields {missing}")
        extra = {k: v for k, v in row.items() if k not in CORE_FIELDS}
        return cls(
            instance_id=row["instance_id"],
            repo=row["repo"],
            patch=row["patch"],
            problem_statement=row["problem_statement"],
            FAIL_TO_PASS=list(_as_list(row["FAIL_TO_PASS"])),
            PASS_TO_PASS=list(_as_list(row["PASS_TO_PASS"])),
            image_name=row.get("image_name") or "",
            extra=extra,
        )


def _as_list(value: Any) -> list[str]:
    """Test lists come as lists (SWE-smith) or JSON-encoded strings (SWE-bench)."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        raise ValueError(f"expected a list of test ids, got {type(value).__name__}")
    return value


def read_instances(path: str | Path) -> list[Instance]:
    """Read instances from JSONL; an unreadable line raises InputError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("instances file not found", path=str(path))
    out: list[Instance] = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(Instance.from_row(json.loads(line)))
            except (ValueError, TypeError, KeyError) as err:
                raise InputError(str(err), path=str(path), line=lineno) from None
    return out


def write_instances(path: str | Path, instances: list[Instance]) -> None:
    """Write instances as JSONL (one row per line, keys in schema order, extras after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for inst in instances:
            fh.write(json.dumps(inst.to_row(), ensure_ascii=False) + "\n")
