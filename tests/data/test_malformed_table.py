"""A table of malformed inputs mixed among valid rows in one source file: each is quarantined
with the file, its line, the check that failed and the field it names, and every valid row is
kept (counted by id)."""

from __future__ import annotations

import json

from hrm.data.pull import pull
from hrm.data.validate import validate

VALID = 24
"""Sample rows kept as they are (the first VALID); the malformed rows are built from later ones,
so no malformed row shares an id with a valid one."""

DOTDOT = "diff --git a/../x b/../x\n--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n"
ABSOLUTE = "diff --git a//etc/x b//etc/x\n--- a//etc/x\n+++ b//etc/x\n@@ -1 +1 @@\n-a\n+b\n"
SYMLINK = ("diff --git a/t/link b/t/link\nnew file mode 120000\nindex 0000000..1111111\n"
           "--- /dev/null\n+++ b/t/link\n@@ -0,0 +1 @@\n+/etc/shadow\n")
BINARY = ("diff --git a/logo.png b/logo.png\nindex 1111111..2222222 100644\n"
          "Binary files a/logo.png and b/logo.png differ\n")


def _j(row: dict, **changes) -> bytes:
    return json.dumps({**row, **changes}).encode()


def _without(row: dict, key: str) -> bytes:
    return json.dumps({k: v for k, v in row.items() if k != key}).encode()


# (case, build(row) -> line bytes, the check that must fail, the field its reason names)
CASES = [
    ("id with a shell metacharacter", lambda r: _j(r, instance_id=r["instance_id"] + ";rm"),
     "id_wellformed", "instance_id"),
    ("id with ../", lambda r: _j(r, instance_id="../" + r["instance_id"]), "id_wellformed", "instance_id"),
    ("id without its bug part", lambda r: _j(r, instance_id=r["instance_id"].rsplit(".", 1)[0]),
     "id_wellformed", "instance_id"),
    ("id null", lambda r: _j(r, instance_id=None), "instance_id_not_null", "instance_id"),
    ("id a number", lambda r: _j(r, instance_id=42), "instance_id_is_text", "instance_id"),
    ("repo of another commit", lambda r: _j(r, repo=r["repo"][:-8] + "deadbeef"),
     "repo_matches_id", "repo"),
    ("repo null", lambda r: _j(r, repo=None), "repo_not_null", "repo"),
    ("repo a list", lambda r: _j(r, repo=[r["repo"]]), "repo_is_text", "repo"),
    ("image_name null", lambda r: _j(r, image_name=None), "image_name_not_null", "image_name"),
    ("statement empty", lambda r: _j(r, problem_statement=""), "statement_nonempty",
     "problem_statement"),
    ("statement whitespace", lambda r: _j(r, problem_statement=" \n\t "), "statement_nonempty",
     "problem_statement"),
    ("statement null", lambda r: _j(r, problem_statement=None), "problem_statement_not_null",
     "problem_statement"),
    ("statement a number", lambda r: _j(r, problem_statement=3), "problem_statement_is_text",
     "problem_statement"),
    ("statement too long", lambda r: _j(r, problem_statement="x" * 300_000), "statement_size",
     "problem_statement"),
    ("statement with a lone surrogate", lambda r: _j(r, problem_statement="a\ud800b"),
     "fields_utf8", "problem_statement"),
    ("patch null", lambda r: _j(r, patch=None), "patch_not_null", "patch"),
    ("patch a number", lambda r: _j(r, patch=7), "patch_is_text", "patch"),
    ("patch without diff --git", lambda r: _j(r, patch=r["patch"].split("\n", 1)[1]),
     "patch_starts_with_diff_git", "patch"),
    ("patch without final newline", lambda r: _j(r, patch=r["patch"][:-1]),
     "patch_ends_with_newline", "patch"),
    ("patch with NUL", lambda r: _j(r, patch=r["patch"].replace("\n ", "\n \x00", 1)),
     "patch_no_nul", "patch"),
    ("patch with no hunk", lambda r: _j(r, patch="diff --git a/x b/x\n"), "patch_parses", "patch"),
    ("binary patch", lambda r: _j(r, patch=BINARY), "patch_no_binary", "patch"),
    ("patch into ../", lambda r: _j(r, patch=r["patch"] + DOTDOT), "patch_paths_inside", "patch"),
    ("patch into /etc", lambda r: _j(r, patch=r["patch"] + ABSOLUTE), "patch_paths_inside", "patch"),
    ("patch adding a symlink", lambda r: _j(r, patch=r["patch"] + SYMLINK), "patch_paths_inside",
     "patch"),
    ("patch of 10,000 lines", lambda r: _j(r, patch=r["patch"] + "".join(
        f"diff --git a/f{i} b/f{i}\n--- a/f{i}\n+++ b/f{i}\n@@ -1 +1 @@\n-a\n+b\n"
        for i in range(1700))), "patch_size", "patch"),
    ("FAIL_TO_PASS a string", lambda r: _j(r, FAIL_TO_PASS=r["FAIL_TO_PASS"][0]),
     "f2p_nonempty_list", "FAIL_TO_PASS"),
    ("FAIL_TO_PASS empty", lambda r: _j(r, FAIL_TO_PASS=[]), "f2p_nonempty_list", "FAIL_TO_PASS"),
    ("FAIL_TO_PASS not a test id", lambda r: _j(r, FAIL_TO_PASS=["not a test id!"]),
     "f2p_node_ids", "FAIL_TO_PASS"),
    ("PASS_TO_PASS a dict", lambda r: _j(r, PASS_TO_PASS={"a": 1}), "p2p_is_list", "PASS_TO_PASS"),
    ("PASS_TO_PASS not a test id", lambda r: _j(r, PASS_TO_PASS=["??"]), "p2p_node_ids",
     "PASS_TO_PASS"),
    ("a test in both lists", lambda r: _j(r, PASS_TO_PASS=r["PASS_TO_PASS"] + r["FAIL_TO_PASS"][:1]),
     "tests_disjoint", "PASS_TO_PASS"),
    ("PASS_TO_PASS empty for a mutation", lambda r: _j(r, PASS_TO_PASS=[]),
     "p2p_empty_only_for_pr", "PASS_TO_PASS"),
    ("a field missing", lambda r: _without(r, "patch"), "schema", "patch"),
    ("created_at without base_commit", lambda r: _j(r, created_at="2024-01-01"), "schema",
     "base_commit"),
    ("not an object", lambda r: b"[1, 2, 3]", "readable", "JSON object"),
    ("cut JSON", lambda r: _j(r)[:100], "readable", "JSON"),
    ("invalid UTF-8", lambda r: _j(r).replace(b'"problem_statement": "', b'"problem_statement": "\xff', 1),
     "readable", "UTF-8"),
]


def test_every_malformed_row_is_named_and_every_valid_row_kept(sample_rows, data_cfg, tmp_path):
    assert len(CASES) >= 30 and len(sample_rows) >= VALID + len(CASES) - 16
    valid = sample_rows[:VALID]
    bases = sample_rows[VALID:]
    lines: list[bytes] = []
    expected: dict[int, tuple[str, str, str]] = {}  # line -> (case, check, field)
    for k, (case, build, check, fld) in enumerate(CASES):
        if k < len(valid):
            lines.append(json.dumps(valid[k]).encode())
        row = dict(bases[k % len(bases)])
        row["instance_id"] = f"{row['instance_id']}{k}" if check not in (
            "id_wellformed", "instance_id_not_null", "instance_id_is_text") else row["instance_id"]
        lines.append(build(row))
        expected[len(lines)] = (case, check, fld)
    lines += [json.dumps(r).encode() for r in valid[len(CASES):]]
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")

    snap = tmp_path / "snap.jsonl"
    summary = pull(str(src), snap, data_cfg)
    assert summary.rows == len(lines)  # every line kept for validation, readable or not
    out = tmp_path / "validated"
    result = validate(snap, out, data_cfg.model_copy(update={"max_invalid_fraction": 0.9,
                                                             "max_patch_lines": 5000}))
    quarantine = {q["source"]["line"]: q for q in map(
        json.loads, (out / "quarantine.jsonl").read_text().splitlines())}
    missing = {expected[k][0]: k for k in set(expected) - set(quarantine)}
    extra = {k: [r["check"] for r in quarantine[k]["reasons"]] for k in set(quarantine) - set(expected)}
    assert not missing and not extra, (missing, extra)
    for line, (case, check, fld) in expected.items():
        q = quarantine[line]
        assert q["source"]["file"] == str(src), case
        reasons = {r["check"]: r for r in q["reasons"]}
        assert check in reasons, (case, sorted(reasons))
        said = reasons[check]["message"] + " " + reasons[check]["detail"]
        assert fld in said, (case, said)
    kept = {json.loads(x)["instance_id"] for x in (out / "instances.jsonl").read_text().splitlines()}
    assert kept == {r["instance_id"] for r in valid} and result.valid == VALID
    assert result.quarantined == len(CASES)

