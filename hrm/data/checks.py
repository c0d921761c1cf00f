"""The row checks of validation: what Great Expectations evaluates natively, and what is derived.

Every check is one GX expectation (`hrm.data.suite`). Two families:

- GX-native (`Check.native`): a GX expectation that expresses the check exactly, run on a
  snapshot field. Two columns per text field feed them (`hrm.data.suite.frame`): the field as it
  came (`instance_id`: object dtype, for the not-null and type expectations) and a typed copy
  (`_str_instance_id`: the value when it is a UTF-8-encodable string, else null) for regex and
  length expectations, so that a value of the wrong type never reaches a regex (it is reported
  once, by the type expectation, instead of raising or mis-evaluating as `str(value)`).
  GX ignores nulls in column expectations, so each text field also has a not-null expectation
  (restricted to rows that have the field at all: a missing field is the `schema` check's).
- Derived (`Check.native` False): what GX cannot express, computed here per row into a derived
  column that GX then asserts on. Each is True (passes), False (fails) or None (not
  applicable, because a prerequisite failed: e.g. patch checks on a row whose patch is not a
  string), so that a row lists every independent reason it failed without cascades. Numeric
  columns carry sizes checked against bounds.

A `detail` string per failed check says what was wrong in that row (e.g. the parse error);
for native checks it is written from the row after GX named it (`native_detail`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import unidiff

from hrm.data.instance import _ID_RE, parse_instance_id
from hrm.data.schemas import SCHEMA_SWE_BENCH, classify, missing_fields
from hrm.data.test_ids import DEFAULT_RUNNER, TEST_RUNNERS, bad_test_ids

_BINARY_RE = re.compile(r"^(Binary files .* differ|GIT binary patch)$", re.MULTILINE)
_PATH_LINE_RE = re.compile(r"^(?:(?:---|\+\+\+) |(?:rename|copy) (?:from|to) )(.*)$", re.MULTILINE)
_GIT_LINE_RE = re.compile(r"^diff --git (\S+) (\S+)$", re.MULTILINE)
_SYMLINK_RE = re.compile(r"^(?:new file mode|deleted file mode|old mode|new mode) 120000$", re.MULTILINE)


def _patch_path(raw: str, prefixed: bool) -> str:
    """A path as a patch header names it: git's quoting removed, the timestamp after a tab
    dropped, and the a/ or b/ prefix stripped where the header carries one."""
    path = raw.split("\t", 1)[0].strip()
    if len(path) >= 2 and path[0] == path[-1] == '"':
        path = path[1:-1]
    if prefixed and path[:2] in ("a/", "b/"):
        path = path[2:]
    return path


def _headers(patch: str) -> str:
    """The patch's file header lines only (from each `diff --git` line to its first hunk), so
    that a hunk line such as a removed `-- /x` is never read as a path."""
    kept, in_header = [], False
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            in_header = True
        elif line.startswith("@@"):
            in_header = False
        if in_header:
            kept.append(line)
    return "\n".join(kept)


def paths_outside_tree(patch: str) -> list[str]:
    """Why the patch would touch something outside the repository it applies to: an absolute
    path (`/etc/passwd`, or `a//etc/passwd` once the prefix goes), a `..` component, or a
    symlink (git mode 120000: `git apply` would write a link that can point anywhere). Empty
    when every path stays inside."""
    headers = _headers(patch)
    paths = [_patch_path(m[1], m[0].startswith(("---", "+++"))) for m in _PATH_LINE_RE.finditer(headers)]
    paths += [_patch_path(raw, True) for m in _GIT_LINE_RE.finditer(headers) for raw in m.groups()]
    reasons = []
    for path in paths:
        if path == "/dev/null":
            continue
        if path.startswith("/"):
            reasons.append(f"absolute path {path!r}")
        elif ".." in path.split("/"):
            reasons.append(f"'..' in {path!r}")
    if _SYMLINK_RE.search(headers):
        reasons.append("a symlink (mode 120000)")
    return list(dict.fromkeys(reasons))

TEXT_FIELDS = ("instance_id", "repo", "patch", "problem_statement", "image_name")
"""Core fields that must be strings: each gets a not-null and a type expectation."""

# Regexes of the native expectations. GX runs them with `re.search` semantics (pandas
# `str.contains`; pandas keeps Python `re` semantics where RE2 would differ), so they anchor.
ID_REGEX = re.sub(r"\(\?P<\w+>", "(?:", _ID_RE.pattern).removesuffix("$") + r"\Z"
"""`parse_instance_id`'s pattern without named groups, anchored at the very end (`$` would
allow a trailing newline)."""
PATCH_START_REGEX = r"^diff --git "
PATCH_END_REGEX = r"\n\Z"
NUL_REGEX = r"\x00"
NONBLANK_REGEX = r"\S"
"""Has a non-whitespace character: the same as `bool(s.strip())` (both use Unicode whitespace)."""


def text_column(name: str) -> str:
    """The typed copy of text field `name`: the string, or null when it is not a UTF-8 string."""
    return f"_str_{name}"


def has_column(name: str) -> str:
    """True where the row has field `name` at all (null or not)."""
    return f"_has_{name}"


DERIVED_KINDS = ("flag", "schema", "max")
NATIVE_KINDS = ("not_null", "str", "regex", "not_regex", "max_length", "unique")


@dataclass(frozen=True)
class Check:
    """One validated property: the column GX evaluates, the expectation kind, its meaning."""

    name: str
    column: str
    message: str
    """What a failing row is wrong about (shown in the quarantine and report)."""
    kind: str = "flag"
    """Derived: `flag` (column must be True), `schema` (an allowed schema name), `max` (numeric
    column at most a bound from params, with `mostly`). GX-native: `not_null`, `str` (values
    are strings), `regex` / `not_regex` (values match / do not match `regex`), `max_length`
    (string length at most a bound, with `mostly`), `unique` (report only, see `routes`)."""
    field: str | None = None
    """The snapshot field a native check is about."""
    regex: str | None = None

    @property
    def native(self) -> bool:
        return self.kind in NATIVE_KINDS

    @property
    def routes(self) -> bool:
        """False for report-only expectations: they never quarantine a row nor fail the step."""
        return self.kind != "unique"

    @property
    def mostly(self) -> bool:
        """Bounds checked with `mostly`: failing rows are quarantined, and the share within
        bounds is itself a table-level property (failing it fails the step)."""
        return self.kind in ("max", "max_length")


def _not_null(name: str) -> Check:
    return Check(f"{name}_not_null", name, f"{name} is null", "not_null", name)


def _is_text(name: str) -> Check:
    return Check(f"{name}_is_text", name, f"{name} is not a string", "str", name)


CHECKS: tuple[Check, ...] = (
    Check("readable", "_readable", "input line is not a readable JSON object"),
    Check("schema", "_row_schema", "row does not have exactly the fields of a SWE-smith schema (7 or 9)", "schema"),
    _not_null("instance_id"),
    _is_text("instance_id"),
    Check("id_wellformed", text_column("instance_id"), "instance_id is not OWNER__REPO.COMMIT.BUG (SWE-smith)",
          "regex", "instance_id", ID_REGEX),
    Check("id_unique", "_id_unique", "instance_id duplicates an earlier row"),
    Check("id_copies", text_column("instance_id"),
          "instance_id is shared with another row (every copy, the first included; report only: "
          "id_unique quarantines the later copies)", "unique", "instance_id"),
    _not_null("repo"),
    _is_text("repo"),
    Check("repo_matches_id", "_repo_matches_id", "repo is not swesmith/OWNER__REPO.COMMIT of the id"),
    Check("fields_utf8", "_fields_utf8", "a field other than patch holds text that is not valid UTF-8"),
    _not_null("image_name"),
    _is_text("image_name"),
    _not_null("patch"),
    _is_text("patch"),
    Check("patch_utf8", "_patch_utf8", "patch is not valid UTF-8"),
    Check("patch_no_nul", text_column("patch"), "patch contains NUL bytes", "not_regex", "patch", NUL_REGEX),
    Check("patch_starts_with_diff_git", text_column("patch"), "patch does not start with 'diff --git'",
          "regex", "patch", PATCH_START_REGEX),
    Check("patch_ends_with_newline", text_column("patch"), "patch does not end with a newline",
          "regex", "patch", PATCH_END_REGEX),
    Check("patch_parses", "_patch_parses", "patch is not a unified diff with at least one hunk"),
    Check("patch_no_binary", "_patch_no_binary", "patch has a binary file change"),
    Check("patch_paths_inside", "_patch_paths_inside",
          "patch touches a path outside the repository tree (absolute, '..', or a symlink)"),
    Check("patch_size", "_patch_lines", "patch has more lines than data.max_patch_lines", "max"),
    _not_null("problem_statement"),
    _is_text("problem_statement"),
    Check("statement_nonempty", text_column("problem_statement"), "problem_statement is empty or whitespace",
          "regex", "problem_statement", NONBLANK_REGEX),
    Check("statement_size", text_column("problem_statement"),
          "problem_statement is longer than data.max_problem_statement_chars", "max_length", "problem_statement"),
    Check("f2p_nonempty_list", "_f2p_nonempty_list", "FAIL_TO_PASS is not a non-empty list of strings"),
    Check("f2p_node_ids", "_f2p_node_ids", "FAIL_TO_PASS has an item that is not a test id of the row's test_runner (pytest node id by default)"),
    Check("p2p_is_list", "_p2p_is_list", "PASS_TO_PASS is not a list of strings"),
    Check("p2p_node_ids", "_p2p_node_ids", "PASS_TO_PASS has an item that is not a test id of the row's test_runner (pytest node id by default)"),
    Check("tests_disjoint", "_tests_disjoint", "FAIL_TO_PASS and PASS_TO_PASS share tests"),
    Check("p2p_empty_only_for_pr", "_p2p_empty_only_for_pr", "PASS_TO_PASS is empty but the instance is not pr_*"),
)
CHECKS_BY_NAME = {c.name: c for c in CHECKS}
DERIVED_COLUMNS = tuple(c.column for c in CHECKS if not c.native)


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


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def native_detail(check: Check, row: dict[str, Any] | None) -> str:
    """Say what was wrong in `row` for a native check GX found it failing."""
    value = (row or {}).get(check.field or "")
    if check.kind == "not_null":
        return f"{check.field} is {'null' if value is None else _short(value)}"
    if check.kind == "str":
        return f"{check.field} is a {type(value).__name__}: {_short(value)}"
    if not isinstance(value, str):
        return ""
    if check.name == "id_wellformed":
        return f"malformed instance_id {_short(value, 120)}"
    if check.name == "patch_no_nul":
        return f"NUL at offset {value.find(chr(0))}"
    if check.name == "patch_starts_with_diff_git":
        return f"starts with {value[:30]!r}"
    if check.name == "patch_ends_with_newline":
        return f"ends with {value[-30:]!r}"
    if check.name == "statement_nonempty":
        return "empty problem statement" if not value else f"whitespace only ({len(value)} characters)"
    if check.name == "statement_size":
        return f"{len(value)} characters"
    if check.name == "id_copies":
        return f"{value!r} occurs in more than one row"
    return ""


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def encodable(value: Any) -> bool:
    """True if every string inside `value` encodes as UTF-8 (JSON can carry lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(encodable(v) for v in value)
    if isinstance(value, dict):
        return all(encodable(k) and encodable(v) for k, v in value.items())
    return True




def is_utf8_text(value: Any) -> bool:
    """True for a string that encodes as UTF-8 (what the typed text columns hold)."""
    return isinstance(value, str) and encodable(value)


def check_row(row: dict[str, Any] | None, error: str | None, seen_ids: dict[str, str], where: str) -> RowChecks:
    """Compute the derived checks of one row. `seen_ids` maps ids to where they first occurred.

    Native checks are left to GX; the instance id is still parsed here (when it is a string)
    because `repo_matches_id` and `p2p_empty_only_for_pr` need its parts.
    """
    rc = RowChecks({column: None for column in DERIVED_COLUMNS})
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
        except ValueError:
            pass  # id_wellformed (GX) reports it
        # The first occurrence is kept; every later copy is quarantined.
        if instance_id in seen_ids:
            rc.set("id_unique", False, f"{instance_id!r} first seen at {seen_ids[instance_id]}")
        else:
            seen_ids[instance_id] = where
            rc.set("id_unique", True)
    repo = row.get("repo")
    if parsed_id is not None and isinstance(repo, str):
        rc.set("repo_matches_id", repo == parsed_id.repo, f"repo {repo!r}, id implies {parsed_id.repo!r}")

    bad_fields = [k for k, v in row.items() if k != "patch" and not encodable(v)]
    rc.set("fields_utf8", not bad_fields, f"unencodable text in {bad_fields}")
    _check_patch(row, rc)
    _check_tests(row, rc, parsed_id)
    return rc


def _check_patch(row: dict[str, Any], rc: RowChecks) -> None:
    patch = row.get("patch")
    if not isinstance(patch, str):
        return  # patch_not_null / patch_is_text (GX) report it
    try:
        patch.encode("utf-8")
        rc.set("patch_utf8", True)
    except UnicodeEncodeError as err:
        rc.set("patch_utf8", False, f"unencodable character at offset {err.start} (lone surrogate)")
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
    outside = paths_outside_tree(patch)
    rc.set("patch_paths_inside", not outside, "; ".join(outside))
    binary_files = [f.path for f in parsed if f.is_binary_file]
    ok = binary is None and not binary_files
    rc.set("patch_no_binary", ok, f"binary change in {binary_files or binary[0]!r}" if not ok else "")


def _check_tests(row: dict[str, Any], rc: RowChecks, parsed_id) -> None:
    f2p, p2p = row.get("FAIL_TO_PASS"), row.get("PASS_TO_PASS")
    f2p_ok = p2p_ok = False
    # SWE-bench rows converted from Django or sympy name tests their runner's way (hrm.data.test_ids)
    runner = row.get("test_runner", DEFAULT_RUNNER)
    if runner not in TEST_RUNNERS:
        runner, unknown = DEFAULT_RUNNER, f"unknown test_runner {row.get('test_runner')!r}; "
    else:
        unknown = ""
    if "FAIL_TO_PASS" in row:
        f2p_ok = bool(rc.set(
            "f2p_nonempty_list",
            _string_list(f2p) and len(f2p) > 0,
            f"FAIL_TO_PASS is {'an empty list' if f2p == [] else f'a {type(f2p).__name__}: {str(f2p)[:60]!r}'}",
        ))
        if f2p_ok:
            bad = bad_test_ids(f2p, runner)
            rc.set("f2p_node_ids", not bad and not unknown,
                   f"{unknown}not {runner} test ids: {bad[:3]}")
    if "PASS_TO_PASS" in row:
        p2p_ok = bool(rc.set("p2p_is_list", _string_list(p2p), f"PASS_TO_PASS is a {type(p2p).__name__}"))
        if p2p_ok:
            bad = bad_test_ids(p2p, runner)
            rc.set("p2p_node_ids", not bad and not unknown,
                   f"{unknown}not {runner} test ids: {bad[:3]}")
    if f2p_ok and p2p_ok:
        shared = sorted(set(f2p) & set(p2p))
        rc.set("tests_disjoint", not shared, f"in both lists: {shared[:3]}")
    if p2p_ok and parsed_id is not None:
        ok = bool(p2p) or parsed_id.is_pr
        rc.set("p2p_empty_only_for_pr", ok, f"bug type {parsed_id.bug_type!r} with no PASS_TO_PASS")
