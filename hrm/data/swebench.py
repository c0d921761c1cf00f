"""Convert SWE-bench rows into SWE-smith instances (only when asked with `--format swe-bench`).

SWE-bench's `patch` FIXES the bug at `base_commit`; SWE-smith's `patch` INTRODUCES it into a
working tree. The conversion reverses the patch, so that applied to `base_commit` + fix it
introduces the bug again, and names the instance like a SWE-smith PR mirror:
`django__django-11099` at base commit `abcdef12...` becomes `django__django.abcdef12.pr_11099`
with repo `swesmith/django__django.abcdef12`. The original id, `test_patch` and every other
field are kept as extra fields (an environment for such an instance must apply `test_patch`).
The runner its test ids are written for (pytest node ids, Django's `test_x (module.Class)` or
docstring names, sympy's bare names) goes into `test_runner` (`hrm.data.test_ids`).
"""

from __future__ import annotations

import re
from typing import Any

import unidiff

from hrm.data.schemas import SWE_BENCH_ID_RE, normalise
from hrm.data.test_ids import id_style, runner_for

_HUNK_RE = re.compile(r"^@@ -(\d+(?:,\d+)?) \+(\d+(?:,\d+)?) @@(.*)$", re.DOTALL)
_DIFF_GIT_RE = re.compile(r"^diff --git (a/\S+) (b/\S+)(\r?\n)?$")


class ConversionError(ValueError):
    """A SWE-bench row that cannot be converted; the message says which field is at fault."""


def _strip_prefix(path: str) -> str:
    return path[2:] if path[:2] in ("a/", "b/") else path


def reverse_patch(patch: str) -> str:
    """Reverse a git unified diff (what `git apply -R` would apply), text in, text out.

    Headers swap sides (`---`/`+++`, index hashes, new/deleted file, renames, modes); in each
    hunk the ranges swap and, within every run of changed lines, the removed lines (formerly
    added) are emitted before the added ones, as git writes them. A `\\ No newline at end of
    file` marker stays attached to the line it follows. Raises ConversionError when the
    result does not parse as a diff.
    """
    lines = patch.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old, new = line[4:], lines[i + 1][4:]
            out.append("--- " + _swap_side(new, "a/"))
            out.append("+++ " + _swap_side(old, "b/"))
            i += 2
            continue
        if line.startswith("@@ "):
            m = _HUNK_RE.match(line)
            if not m:
                raise ConversionError(f"patch: malformed hunk header {line.rstrip()!r}")
            out.append(f"@@ -{m[2]} +{m[1]} @@{m[3]}")
            i = _reverse_hunk_body(lines, i + 1, out, _range_length(m[1]), _range_length(m[2]))
            continue
        out.append(_reverse_header(line))
        i += 1
    result = "".join(out)
    try:
        unidiff.PatchSet(result)
    except unidiff.UnidiffParseError as err:
        raise ConversionError(f"patch: reversed diff does not parse: {err}") from None
    return result


def _swap_side(path_line: str, prefix: str) -> str:
    """`b/x.py` seen from the other side is `a/x.py`; `/dev/null` stays."""
    body = path_line.rstrip("\r\n")
    eol = path_line[len(body) :]
    head, sep, tail = body.partition("\t")
    if head != "/dev/null" and head[:2] in ("a/", "b/"):
        head = prefix + head[2:]
    return head + sep + tail + eol


def _reverse_header(line: str) -> str:
    m = _DIFF_GIT_RE.match(line)
    if m:
        return f"diff --git a/{_strip_prefix(m[2])} b/{_strip_prefix(m[1])}{m[3] or ''}"
    swaps = (
        ("new file mode ", "deleted file mode "),
        ("deleted file mode ", "new file mode "),
        ("old mode ", "new mode "),
        ("new mode ", "old mode "),
        ("rename from ", "rename to "),
        ("rename to ", "rename from "),
        ("copy from ", "copy to "),
        ("copy to ", "copy from "),
    )
    for prefix, replacement in swaps:
        if line.startswith(prefix):
            return replacement + line[len(prefix) :]
    if line.startswith("index "):
        rest = line[len("index ") :]
        hashes, space, mode = rest.partition(" ")
        old, dots, new = hashes.rstrip("\r\n").partition("..")
        if dots:
            eol = "" if space else hashes[len(hashes.rstrip("\r\n")) :]
            return f"index {new}..{old}{eol}{space}{mode}"
    return line


def _range_length(spec: str) -> int:
    """`12,3` -> 3; `12` -> 1 (a unified-diff range without a count covers one line)."""
    return int(spec.split(",")[1]) if "," in spec else 1


def _reverse_hunk_body(lines: list[str], i: int, out: list[str], old_len: int, new_len: int) -> int:
    """Reverse the body of one hunk starting at `i`; return the index after it.

    The body is consumed by the hunk's line counts, so a following `--- ` header is never
    mistaken for a removed line.
    """
    removed: list[str] = []
    added: list[str] = []
    last: list[str] = out

    def flush() -> None:
        out.extend(removed)
        out.extend(added)
        removed.clear()
        added.clear()

    while i < len(lines) and (old_len > 0 or new_len > 0 or lines[i].startswith("\\")):
        line = lines[i]
        tag = line[:1]
        if tag == "+":
            removed.append("-" + line[1:])
            last = removed
            new_len -= 1
        elif tag == "-":
            added.append("+" + line[1:])
            last = added
            old_len -= 1
        elif tag == "\\":
            # The marker belongs to the line just before it, whichever run that went to.
            last.append(line)
        elif tag in (" ", "\n", "\r"):
            flush()
            out.append(line)
            last = out
            old_len -= 1
            new_len -= 1
        else:
            raise ConversionError(f"patch: unexpected line in hunk: {line.rstrip()!r}")
        i += 1
    flush()
    return i


def convert_row(row: dict[str, Any]) -> dict[str, Any]:
    """Turn one SWE-bench row into a SWE-smith row (see the module docstring)."""
    instance_id = row.get("instance_id")
    m = SWE_BENCH_ID_RE.match(instance_id) if isinstance(instance_id, str) else None
    if not m:
        raise ConversionError(f"instance_id: {instance_id!r} is not a SWE-bench id OWNER__REPO-N")
    base_commit = row.get("base_commit")
    if not isinstance(base_commit, str) or not re.fullmatch(r"[0-9a-f]{7,40}", base_commit):
        raise ConversionError(f"base_commit: expected a git commit hash, got {base_commit!r}")
    patch = row.get("patch")
    if not isinstance(patch, str):
        raise ConversionError(f"patch: expected a string, got {type(patch).__name__}")
    commit8 = base_commit[:8]
    stem = f"{m['owner']}__{m['name']}.{commit8}"
    converted = normalise(row)
    tests = [t for key in ("FAIL_TO_PASS", "PASS_TO_PASS")
             for t in (converted.get(key) if isinstance(converted.get(key), list) else [])]
    runner = runner_for(tests)
    if runner is None:
        styles = sorted({str(id_style(t)) for t in tests})
        raise ConversionError(f"FAIL_TO_PASS/PASS_TO_PASS: test ids of mixed or unknown styles "
                              f"({', '.join(styles)}): {[t for t in tests if id_style(t) is None][:3] or tests[:3]}")
    converted.update(
        instance_id=f"{stem}.pr_{m['number']}",
        repo=f"swesmith/{stem}",
        patch=reverse_patch(patch),
        original_instance_id=instance_id,
        original_repo=row.get("repo"),
        converted_from="swe-bench",
        test_runner=runner,
    )
    converted.setdefault("image_name", "")
    return normalise(converted)
