"""The row checks of validation: derived columns computed per snapshot row.

Great Expectations then asserts on these columns (`hrm.data.suite`). Each check is True
(passes), False (fails) or None (not applicable, because a prerequisite check already failed:
e.g. patch checks on a row whose patch is not a string), so that a row lists every independent
reason it failed without cascades. Numeric columns carry sizes checked against bounds.
A `detail` string per failed check says what was wrong in that row (e.g. the parse error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import unidiff

from hrm.data.instance import parse_instance_id
from hrm.data.schemas import SCHEMA_SWE_BENCH, classify, missing_fields

# pytest node id: a .py path, optionally followed by ::names (parameters may contain spaces).
NODE_ID_RE = re.compile(r"^[^\s:]+\.py(::\S.*)?\Z")
_BINARY_RE = re.compile(r"^(Binary files .* differ|GIT binary patch)$", re.MULTILINE)


@dataclass(frozen=True)
class Check:
    """One validated property: its derived column, the GX expectation kind, and its meaning."""

    name: str
    column: str
    message: str
    """What a failing row is wrong about (shown in the quarantine and report)."""
    kind: str = "flag"
    """`flag`: column must be True. `schema`: column must be an allowed schema name.
    `max`: numeric column must be at most a bound from params, with `mostly`."""


CHECKS: tuple[Check, ...] = (
    Check("readable", "_readable", "input line is not a readable JSON object"),
    Check("schema", "_row_schema", "row is not a SWE-smith row (7- or 9-field schema)", "schema"),
    Check("id_wellformed", "_id_wellformed", "instance_id is not OWNER__REPO.COMMIT.BUG (SWE-smith)"),
    Check("id_unique", "_id_unique", "instance_id duplicates an earlier row"),
    Check("repo_matches_id", "_repo_matches_id", "repo is not swesmith/OWNER__REPO.COMMIT of the id"),
    Check("fields_utf8", "_fields_utf8", "a field other than patch holds text that is not valid UTF-8"),
    Check("image_name_is_text", "_image_name_is_text", "image_name is not a string"),
    Check("patch_is_text", "_patch_is_text", "patch is not a string"),
    Check("patch_utf8", "_patch_utf8", "patch is not valid UTF-8"),
    Check("patch_no_nul", "_patch_no_nul", "patch contains NUL bytes"),
    Check("patch_starts_with_diff_git", "_patch_starts_with_diff_git", "patch does not start with 'diff --git'"),
    Check("patch_ends_with_newline", "_patch_ends_with_newline", "patch does not end with a newline"),
    Check("patch_parses", "_patch_parses", "patch is not a unified diff with at least one hunk"),
    Check("patch_no_binary", "_patch_no_binary", "patch has a binary file change"),
    Check("patch_size", "_patch_lines", "patch has more lines than data.max_patch_lines", "max"),
    Check("statement_nonempty", "_statement_nonempty", "problem_statement is empty or not a string"),
    Check("statement_size", "_statement_chars", "problem_statement is longer than data.max_problem_statement_chars", "max"),
    Check("f2p_nonempty_list", "_f2p_nonempty_list", "FAIL_TO_PASS is not a non-empty list of strings"),
    Check("f2p_node_ids", "_f2p_node_ids", "FAIL_TO_PASS has an item that is not a pytest node id"),
    Check("p2p_is_list", "_p2p_is_list", "PASS_TO_PASS is not a list of strings"),
    Check("p2p_node_ids", "_p2p_node_ids", "PASS_TO_PASS has an item that is not a pytest node id"),
    Check("tests_disjoint", "_tests_disjoint", "FAIL_TO_PASS and PASS_TO_PASS share tests"),
    Check("p2p_empty_only_for_pr", "_p2p_empty_only_for_pr", "PASS_TO_PASS is empty but the instance is not pr_*"),
)
CHECKS_BY_NAME = {c.name: c for c in CHECKS}


@dataclass
class RowChecks:
    """Derived values of one row (`values`, by column) and per-check failure details."""

    values: dict[str, Any] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def set(self, check: str, ok: bool | None, detail: str = "") -> bool | None:
        self.values[CHECKS_BY_NAME[check].column] = ok
        if ok is False and detail:
            self.details[check] = detail
        return ok


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _encodable(value: Any) -> bool:
    """True if every string inside `value` encodes as UTF-8 (JSON can carry lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    return True


def _bad_node_ids(items: list[str]) -> list[str]:
    return [t for t in items if not NODE_ID_RE.match(t)]


def check_row(row: dict[str, Any] | None, error: str | None, seen_ids: dict[str, str], where: str) -> RowChecks:
    """Compute every check for one row. `seen_ids` maps ids to where they first occurred."""
    rc = RowChecks({c.column: None for c in CHECKS})
    if row is None:
        rc.set("readable", False, error or "unreadable")
        return rc
    rc.set("readable", True)
    schema = classify(row)
    rc.values["_row_schema"] = schema
    if schema == SCHEMA_SWE_BENCH:
        rc.details["schema"] = "SWE-bench row (its patch is the fix): pull with --format swe-bench to convert"
    elif missing_fields(row):
        rc.details["schema"] = f"missing fields {missing_fields(row)}"

    instance_id = row.get("instance_id")
    parsed_id = None
    if isinstance(instance_id, str):
        try:
            parsed_id = parse_instance_id(instance_id)
            rc.set("id_wellformed", True)
        except ValueError as err:
            rc.set("id_wellformed", False, str(err))
        if instance_id in seen_ids:
            rc.set("id_unique", False, f"{instance_id!r} first seen at {seen_ids[instance_id]}")
        else:
            seen_ids[instance_id] = where
            rc.set("id_unique", True)
    elif "instance_id" in row:
        rc.set("id_wellformed", False, f"instance_id is a {type(instance_id).__name__}, not a string")
    if parsed_id is not None and "repo" in row:
        repo = row["repo"]
        rc.set("repo_matches_id", repo == parsed_id.repo, f"repo {repo!r}, id implies {parsed_id.repo!r}")

    bad_fields = [k for k, v in row.items() if k != "patch" and not _encodable(v)]
    rc.set("fields_utf8", not bad_fields, f"unencodable text in {bad_fields}")
    if "image_name" in row:
        image = row["image_name"]
        rc.set("image_name_is_text", isinstance(image, str), f"image_name is a {type(image).__name__}")
    _check_patch(row, rc)
    _check_statement(row, rc)
    _check_tests(row, rc, parsed_id)
    return rc


def _check_patch(row: dict[str, Any], rc: RowChecks) -> None:
    if "patch" not in row:
        return
    patch = row["patch"]
    if not rc.set("patch_is_text", isinstance(patch, str), f"patch is a {type(patch).__name__}"):
        return
    try:
        patch.encode("utf-8")
        rc.set("patch_utf8", True)
    except UnicodeEncodeError as err:
        rc.set("patch_utf8", False, f"unencodable character at offset {err.start} (lone surrogate)")
    nul = patch.find("\x00")
    rc.set("patch_no_nul", nul < 0, f"NUL at offset {nul}")
    rc.set("patch_starts_with_diff_git", patch.startswith("diff --git "), f"starts with {patch[:30]!r}")
    rc.set("patch_ends_with_newline", patch.endswith("\n"), f"ends with {patch[-30:]!r}")
    rc.values["_patch_lines"] = patch.count("\n") + (0 if patch.endswith("\n") else 1)
    binary = _BINARY_RE.search(patch)
    try:
        parsed = unidiff.PatchSet(patch)
    except (unidiff.UnidiffParseError, UnicodeError, ValueError) as err:
        rc.set("patch_parses", False, f"unidiff: {err}")
        rc.set("patch_no_binary", binary is None, f"binary change: {binary[0] if binary else ''!r}")
        return
    hunks = sum(len(f) for f in parsed)
    rc.set("patch_parses", len(parsed) > 0 and hunks > 0, f"{len(parsed)} files, {hunks} hunks")
    binary_files = [f.path for f in parsed if f.is_binary_file]
    ok = binary is None and not binary_files
    rc.set("patch_no_binary", ok, f"binary change in {binary_files or binary[0]!r}" if not ok else "")


def _check_statement(row: dict[str, Any], rc: RowChecks) -> None:
    if "problem_statement" not in row:
        return
    statement = row["problem_statement"]
    if not isinstance(statement, str):
        rc.set("statement_nonempty", False, f"problem_statement is a {type(statement).__name__}")
        return
    # Whitespace-only counts as empty; the statement itself is never modified.
    rc.set("statement_nonempty", bool(statement.strip()), "empty problem statement")
    rc.values["_statement_chars"] = len(statement)


def _check_tests(row: dict[str, Any], rc: RowChecks, parsed_id) -> None:
    f2p, p2p = row.get("FAIL_TO_PASS"), row.get("PASS_TO_PASS")
    f2p_ok = p2p_ok = False
    if "FAIL_TO_PASS" in row:
        f2p_ok = bool(rc.set(
            "f2p_nonempty_list",
            _string_list(f2p) and len(f2p) > 0,
            f"FAIL_TO_PASS is {'an empty list' if f2p == [] else f'a {type(f2p).__name__}: {str(f2p)[:60]!r}'}",
        ))
        if f2p_ok:
            bad = _bad_node_ids(f2p)
            rc.set("f2p_node_ids", not bad, f"not node ids: {bad[:3]}")
    if "PASS_TO_PASS" in row:
        p2p_ok = bool(rc.set("p2p_is_list", _string_list(p2p), f"PASS_TO_PASS is a {type(p2p).__name__}"))
        if p2p_ok:
            bad = _bad_node_ids(p2p)
            rc.set("p2p_node_ids", not bad, f"not node ids: {bad[:3]}")
    if f2p_ok and p2p_ok:
        shared = sorted(set(f2p) & set(p2p))
        rc.set("tests_disjoint", not shared, f"in both lists: {shared[:3]}")
    if p2p_ok and parsed_id is not None:
        ok = bool(p2p) or parsed_id.is_pr
        rc.set("p2p_empty_only_for_pr", ok, f"bug type {parsed_id.bug_type!r} with no PASS_TO_PASS")
