"""A prediction as a unified diff against the buggy tree (what `git apply` and the SWE-bench
harnesses consume as `model_patch`).

The prediction's decoded regions are spliced into the buggy files (`splice_files`), then each
changed file is diffed in git's format: `diff --git a/P b/P`, `--- a/P`, `+++ b/P`, hunks with
3 lines of context, and git's marker for a last line without a newline. Only `\\n` breaks a
line (as in git), so form feeds and other characters `str.splitlines` splits on stay inside
their line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from hrm.eval.code_checks import splice_files
from hrm.hunks import Hunk, split_lines

NO_NEWLINE = "\\ No newline at end of file\n"


def file_diff(path: str, before: str, after: str) -> str:
    """git-style unified diff of one file ('' when the texts are equal)."""
    if before == after:
        return ""
    body = []
    for line in difflib.unified_diff(split_lines(before), split_lines(after), f"a/{path}",
                                     f"b/{path}", n=3):
        body.append(line if line.endswith("\n") else line + "\n" + NO_NEWLINE)
    return f"diff --git a/{path} b/{path}\n" + "".join(body)


def prediction_patch(hunks: Sequence[Hunk], texts: Sequence[str],
                     buggy_files: Mapping[str, str]) -> str:
    """The diff that turns the buggy files into the prediction (`texts[k]` in place of hunk k's
    buggy region); '' when the prediction changes nothing. Files in path order."""
    fixed = splice_files(hunks, texts, buggy_files)
    return "".join(file_diff(path, buggy_files[path], fixed[path]) for path in sorted(fixed))
