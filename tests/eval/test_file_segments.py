"""File-context checks compile only the statements a row's hunks touch (`code_checks` segments):
they must agree with compiling and dumping the whole spliced files, cold or cached."""

from __future__ import annotations

import functools
import random

import pytest

from hrm.eval.code_checks import (
    _layout,
    check_in_files,
    clear_caches,
    files_compile,
    module_compiles,
    splice_files,
)
from hrm.eval.fragments import normalized_ast
from hrm.hunks import Hunk
from tests.eval.conftest import TENACITY


@functools.lru_cache(maxsize=64)
def _reference_file(text: str) -> str | None:
    """The normalised AST of a reference file, None if it does not compile (the same reference
    file meets every variant of its row: computed once)."""
    return normalized_ast(text) if module_compiles(text) else None


def _whole(pred, refs, hunks, buggy_files) -> tuple[bool | None, bool | None]:
    """(compiles, ast_match) from the whole spliced files: the definition segments must meet."""
    ref_files = {p: _reference_file(s) for p, s in splice_files(hunks, refs, buggy_files).items()}
    if any(a is None for a in ref_files.values()):
        return None, None
    try:
        files = splice_files(hunks, pred, buggy_files)
    except ValueError:
        return False, False
    if not all(module_compiles(s) for s in files.values()):
        return False, False
    return True, all(normalized_ast(files[p]) == ref_files[p] for p in files)


def _agree(pred, refs, hunks, buggy_files, what=""):
    if any(not r.strip() for r in refs) or any(not p.strip() for p in pred):
        return  # blank hunks are decided before compiling; not what this test is about
    want = _whole(pred, refs, hunks, buggy_files)
    clear_caches()
    cold = check_in_files(pred, refs, hunks, buggy_files)
    warm = check_in_files(pred, refs, hunks, buggy_files)
    assert cold == warm, what
    assert (cold.compiles, cold.ast_match) == want, what
    if want[0] is not None:
        assert files_compile(hunks, pred, buggy_files) is want[0], what


def _variants(ref: str, buggy: str, seed: int) -> dict[str, str]:
    lines = ref.splitlines(keepends=True)
    first = lines[0]
    indent = first[:len(first) - len(first.lstrip())]
    chars = list(ref)
    random.Random(seed).shuffle(chars)
    return {
        "oracle": ref,
        "copy": buggy,
        "shuffled": "".join(chars),
        "comment": first.rstrip("\n") + "  # note\n" + "".join(lines[1:]),
        "extra statement": ref + lines[-1],
        "dedented to module level": ref + "x = 1\n",
        "dedent by one level": ref + indent[:-4] + "y = 2\n" if len(indent) >= 4 else ref,
        "trailing decorator": ref + indent + "@staticmethod\n",
        "open bracket": ref + indent + "z = (\n",
        "no final newline": ref.rstrip("\n"),
        "more indented": "    " + ref,
        "global": ref + indent + "global q\n",
        "future import": ref + "from __future__ import annotations\n",
        "truncated": ref[: len(ref) // 2],
        "tab indent": ref.replace("    ", "\t", 1),
    }


def test_segments_agree_with_whole_files_on_tenacity(tenacity_env, instances, sample_hunks):
    """Every tenacity instance of the sample with a file context (its patch hunks); oracle and
    copy always, and a rotating third of the other variants per region (each variant still
    meets dozens of regions; all of them on every region is the same check, 3x slower)."""
    from hrm.eval.execution import ExecutionTier

    _env, cfg = tenacity_env
    tier = ExecutionTier(cfg, {i.instance_id: i for i in instances}, 0)
    checked = 0
    for k, (inst, hunks) in enumerate(sample_hunks):
        ctx = (tier.context(inst.instance_id, inst.repo, hunks) if inst.repo == TENACITY
               else "other repo")
        if isinstance(ctx, str):
            continue
        refs = [h.fixed_text for h in ctx.hunks]
        for j in range(len(refs)):
            variants = _variants(refs[j], ctx.hunks[j].buggy_text, k * 31 + j)
            for v, (name, text) in enumerate(variants.items()):
                if name not in ("oracle", "copy") and (v + k + j) % 3:
                    continue
                pred = [*refs[:j], text, *refs[j + 1:]]
                _agree(pred, refs, ctx.hunks, ctx.buggy_files, f"{inst.instance_id} {j} {name}")
                checked += 1
    assert checked >= 400


BUGGY = '''\
"""Doc."""
from __future__ import annotations

import os


def helper(a, b):
    return a + b


class Outer(
    object,
):
    """Outer doc."""

    x = 1

    class Inner:
        def one(self):
            return 1

        @property
        def two(self):
            return 2

    def three(self):
        total = helper(1,
                       2)
        return total

    def four(self) -> int:
        return 4


VALUE = [1,
         2]
'''


def _hunk(buggy: str, start: int, count: int, fixed: str, path: str = "m.py") -> Hunk:
    lines = buggy.split("\n")
    text = "".join(line + "\n" for line in lines[start - 1:start - 1 + count])
    return Hunk(path, start, text, fixed, "f")


@pytest.mark.parametrize(("start", "count"), [
    (20, 1), (23, 2), (27, 2), (26, 4), (32, 1), (7, 2), (35, 2), (16, 1), (11, 3), (15, 0),
    (25, 0), (31, 0), (37, 0), (1, 1), (19, 6), (22, 1), (28, 1), (14, 1)])
def test_segments_agree_with_whole_files_on_a_nested_file(start, count):
    """Regions in a nested class, across methods, in the header, at module level, insertions
    between statements; each with every variant of a plausible fix."""
    buggy = BUGGY
    hunk = _hunk(buggy, start, count, "")
    lines = buggy.split("\n")
    indent = next((ln[:len(ln) - len(ln.lstrip())] for ln in lines[start - 1:] if ln.strip()), "")
    base = hunk.buggy_text if count else indent + "pass\n"
    hunk = Hunk("m.py", start, hunk.buggy_text, base, "f")
    for name, text in _variants(base, hunk.buggy_text or base, start).items():
        _agree([text], [base], [hunk], {"m.py": buggy}, f"{start}+{count} {name}")


def test_a_suffix_can_close_what_the_segment_opens():
    """The segment alone fails (open string), the file compiles: the whole file decides."""
    buggy = 'def f():\n    return 1\n\n\nx = 1  # """\n'
    hunk = Hunk("m.py", 1, "def f():\n    return 1\n", "def f():\n    return 1\n", "f")
    pred = 'def f():\n    return 1\ns = """\n'  # closed by the comment of the next line
    assert module_compiles(splice_files([hunk], [pred], {"m.py": buggy})["m.py"])
    got = check_in_files([pred], [hunk.fixed_text], [hunk], {"m.py": buggy})
    assert got.compiles is True and got.ast_match is False


def test_layout_cache_is_keyed_by_content():
    """Two versions of one path never share a cache entry, and a hit equals a cold call."""
    a = "def f():\n    return 1\n"
    b = "def f():\n    return (\n"  # does not compile: no layout
    clear_caches()
    assert _layout(a) is not None and _layout(b) is None
    assert _layout(a) is _layout(a)  # cached
    hunk = Hunk("m.py", 2, "    return 1\n", "    return 2\n", "f")
    cold = check_in_files(["    return 2\n"], ["    return 2\n"], [hunk], {"m.py": a})
    warm = check_in_files(["    return 2\n"], ["    return 2\n"], [hunk], {"m.py": a})
    assert cold == warm and cold.compiles and cold.ast_match
    other = "class C:\n    def f():\n        return 1\n"
    hunk2 = Hunk("m.py", 3, "        return 1\n", "        return 2\n", "f")
    got = check_in_files(["    return 2\n"], ["        return 2\n"], [hunk2], {"m.py": other})
    assert got.compiles is False  # same path and prediction, other file: its own answer
