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
    body = [_terminated(line) for line in difflib.unified_diff(
        split_lines(before), split_lines(after), f"a/{path}", f"b/{path}", n=3)]
    return f"diff --git a/{path} b/{path}\n" + "".join(body)


def _terminated(line: str) -> str:
    """A diff line as git writes it: a last line without a newline gets git's marker."""
    return line if line.endswith("\n") else line + "\n" + NO_NEWLINE


def prediction_patch(hunks: Sequence[Hunk], texts: Sequence[str],
                     buggy_files: Mapping[str, str]) -> str:
    """The diff that turns the buggy files into the prediction (`texts[k]` in place of hunk k's
    buggy region); '' when the prediction changes nothing. Files in path order."""
    fixed = splice_files(hunks, texts, buggy_files)
    return "".join(file_diff(path, buggy_files[path], fixed[path]) for path in sorted(fixed))


def _range(start: int, length: int) -> str:
    """A unified-diff line range (0-based `start`), as difflib writes it."""
    first = start + 1 if length else start
    return f"{first}" if length == 1 else f"{first},{length}"


def regions_patch(hunks: Sequence[Hunk], texts: Sequence[str]) -> str:
    """The diff of `texts[k]` over hunk k's buggy region when the whole files are unknown (the
    regions are the patch's own hunks): context comes from inside each region only, line numbers
    from each region's `buggy_start`. '' when nothing changes."""
    by_file: dict[str, list[int]] = {}
    for k, h in enumerate(hunks):
        by_file.setdefault(h.file, []).append(k)
    out = []
    for path in sorted(by_file):
        body, shift = [], 0
        for k in sorted(by_file[path], key=lambda k: hunks[k].buggy_start):
            old, new = split_lines(hunks[k].buggy_text), split_lines(texts[k])
            base = hunks[k].buggy_start - 1
            matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
            for group in matcher.get_grouped_opcodes(3):
                i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
                body.append(f"@@ -{_range(base + i1, i2 - i1)} "
                            f"+{_range(base + shift + j1, j2 - j1)} @@\n")
                for tag, a1, a2, b1, b2 in group:
                    lines = ([(" ", x) for x in old[a1:a2]] if tag == "equal" else
                             [("-", x) for x in old[a1:a2]] + [("+", x) for x in new[b1:b2]])
                    body += [_terminated(mark + line) for mark, line in lines]
            shift += len(new) - len(old)
        if body:
            out.append(f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n" + "".join(body))
    return "".join(out)
