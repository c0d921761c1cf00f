"""Hunk parsing: exact regions, splice round trips, scopes, bad patches."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hrm.errors import InputError
from hrm.hunks import MODULE_SCOPE, apply_regions, parse_patch

FIXED = (
    "import os\n"
    "\n"
    "\n"
    "class Retry:\n"
    "    def __init__(self, n):\n"
    "        self.n = n\n"
    "\n"
    "    def begin(self):\n"
    "        self.count = 1\n"
    "        self.idle = 0\n"
    "        return self\n"
    "\n"
    "\n"
    "def helper(x):\n"
    "    \f# form feed and trailing spaces   \n"
    "    y = x + 1\n"
    "    return y\n"
    "\n"
    "\n"
    "def tail(a,\n"
    "         b):\n"
    "    return a * b"  # no newline at end of file
)


def _git_patch(tmp_path: Path, fixed: dict[str, str], buggy: dict[str, str]) -> str:
    """The bug patch (fixed -> buggy) as git writes it, for files under one directory."""
    for side, files in (("a", fixed), ("b", buggy)):
        for name, text in files.items():
            path = tmp_path / side / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode())
    out = subprocess.run(["git", "diff", "--no-index", "--no-color", "a", "b"], cwd=tmp_path,
                         capture_output=True, check=False)
    assert out.returncode == 1, out.stderr  # 1: differences found
    return out.stdout.decode()


def _splice_all(patch: str, buggy: dict[str, str]) -> dict[str, str]:
    hunks = parse_patch(patch)
    fixed = dict(buggy)
    for name in buggy:
        mine = [h for h in hunks if h.file == f"b/{name}" or h.file.endswith("/" + name)]
        fixed[name] = apply_regions(buggy[name], mine)
    return fixed


@pytest.mark.parametrize(
    "edit",
    [
        # one-line change inside a method
        lambda s: s.replace("self.count = 1", "self.count = 0"),
        # several hunks: change near the top, a deletion in the middle, an edit at the end
        lambda s: s.replace("import os\n", "import os\nimport sys\n")
        .replace("    y = x + 1\n", "")
        .replace("return a * b", "return a + b"),
        # the bug adds a final newline (one side has "\ No newline", the other not)
        lambda s: s + "\n",
        # the bug removes lines at the very end and leaves no newline
        lambda s: s[: s.index("\n\ndef tail")],
        # whitespace-only changes
        lambda s: s.replace("spaces   \n", "spaces\n").replace("\n\n\nclass", "\n \n\nclass"),
    ],
)
def test_splicing_fixed_regions_into_the_buggy_file_gives_the_fixed_file(tmp_path, edit):
    buggy = edit(FIXED)
    patch = _git_patch(tmp_path, {"pkg/mod.py": FIXED}, {"pkg/mod.py": buggy})
    assert _splice_all(patch, {"pkg/mod.py": buggy}) == {"pkg/mod.py": FIXED}


def test_multi_file_patch_and_fixed_regions_match_the_original(tmp_path):
    other = "def f():\n    return 1\n"
    buggy_main = FIXED.replace("self.idle = 0", "self.idle = -1")
    buggy_other = other.replace("return 1", "return 2")
    patch = _git_patch(tmp_path, {"m.py": FIXED, "o.py": other},
                       {"m.py": buggy_main, "o.py": buggy_other})
    hunks = parse_patch(patch)
    assert [h.file for h in hunks] == ["b/m.py", "b/o.py"]
    assert _splice_all(patch, {"m.py": buggy_main, "o.py": buggy_other}) == {
        "m.py": FIXED, "o.py": other}
    # fixed_text sits at fixed_start in the ORIGINAL file, byte for byte
    for hunk, original in zip(hunks, (FIXED, other), strict=True):
        lines = original.split("\n")
        start = hunk.fixed_start - 1
        n = hunk.fixed_text.count("\n") + 1
        assert "\n".join(lines[start : start + n]).startswith(hunk.fixed_text.rstrip("\n"))


def test_no_newline_marker_applies_to_the_right_side():
    patch = (
        "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n"
        " a = 1\n-b = 2\n\\ No newline at end of file\n+b = 3\n"
    )
    (hunk,) = parse_patch(patch)
    assert hunk.fixed_text == "a = 1\nb = 2"
    assert hunk.buggy_text == "a = 1\nb = 3\n"
    assert apply_regions("a = 1\nb = 3\n", [hunk]) == "a = 1\nb = 2"


def test_function_scopes():
    patch = (
        "--- a/t.py\n+++ b/t.py\n@@ -5,6 +5,6 @@ class Retry:\n"
        "         self.n = n\n \n     def begin(self):\n-        self.count = 1\n"
        "+        self.count = 0\n         self.idle = 0\n         return self\n"
        "@@ -20,3 +20,3 @@ def helper(x):\n \n-X = 1\n+X = 2\n \n"
    )
    first, second = parse_patch(patch)
    assert first.function == "Retry.begin"
    assert second.function == MODULE_SCOPE


def test_real_sample_patches_parse(instances):
    by_id = {}
    for inst in instances:
        hunks = parse_patch(inst.patch, source=inst.instance_id)
        assert hunks
        for h in hunks:
            assert h.buggy_text != h.fixed_text  # every hunk changes something
            assert h.buggy_start >= 1
            # every region line is a whole line of its side of the patch (exact bytes)
            patch_lines = set(inst.patch.split("\n"))
            for text, tags in ((h.buggy_text, " +"), (h.fixed_text, " -")):
                for line in text.split("\n")[:-1]:
                    assert any(tag + line in patch_lines for tag in tags) or line == ""
        by_id[inst.instance_id] = hunks
    assert by_id["pandas-dev__pandas.95280573.pr_53652"][0].function == "Index"
    begin = by_id["jd__tenacity.0d40e76f.func_basic__7767pc66"][0]
    assert begin.function == "BaseRetrying.begin"
    assert begin.buggy_start == 348
    assert "attempt_number\"] = 0" in begin.buggy_text
    assert "attempt_number\"] = 1" in begin.fixed_text


def test_sample_regions_end_exactly_where_no_newline_says(instances):
    for inst in instances:
        if "\\ No newline at end of file" not in inst.patch:
            continue
        last = parse_patch(inst.patch)[-1]
        assert not last.buggy_text.endswith("\n") or not last.fixed_text.endswith("\n")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n", "declares -3 +3"),
        ("@@ -1 +1 @@\n-a\n+b\n", "hunk before any"),
        ("diff --git a/x b/x\nindex 1..2\n", "no hunk"),
    ],
)
def test_bad_patches_raise_naming_the_source(patch, message):
    with pytest.raises(InputError, match=re.escape(message)) as info:
        parse_patch(patch, source="inst-42")
    assert "inst-42" in str(info.value)
