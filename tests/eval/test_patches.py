"""Predictions as unified diffs: `model_patch` applies with `git apply` to the buggy tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hrm.eval.patches import NO_NEWLINE, file_diff, prediction_patch, regions_patch
from hrm.hunks import Hunk

from .conftest import reference_outputs

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")


def _git_apply(tree: Path, patch: str) -> None:
    for args in (["--check"], []):
        done = subprocess.run([GIT, "apply", *args, "-"], cwd=tree, input=patch.encode(),
                              capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()


def test_file_diff_applies_with_form_feeds_crlf_and_no_final_newline(tmp_path):
    before = "def f(x):\r\n    \x0c# page\n    return x - 1\n\n\ndef g():\n    return 0"
    after = "def f(x):\r\n    \x0c# page\n    return x + 1\n\n\ndef g():\n    return 1"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_bytes(before.encode())
    patch = file_diff("pkg/m.py", before, after)
    assert patch.startswith("diff --git a/pkg/m.py b/pkg/m.py\n--- a/pkg/m.py\n+++ b/pkg/m.py\n")
    assert patch.count(NO_NEWLINE) == 2  # the old and the new last line
    assert "-    return x - 1\n+    return x + 1\n" in patch
    _git_apply(tmp_path, patch)
    assert (tmp_path / "pkg" / "m.py").read_bytes() == after.encode()
    assert file_diff("pkg/m.py", before, before) == ""


def test_prediction_patch_splices_each_region_of_each_file(tmp_path):
    files = {"a.py": "x = 1\ndef f():\n    return 2\n", "b.py": "def g():\n    return 3\n"}
    hunks = [Hunk("b.py", 1, "def g():\n    return 3\n", "", "g"),
             Hunk("a.py", 2, "def f():\n    return 2\n", "", "f")]
    for path, text in files.items():
        (tmp_path / path).write_text(text)
    patch = prediction_patch(hunks, ["def g():\n    return 4\n", "def f():\n    return 2\n"], files)
    assert "a/a.py" not in patch and patch.startswith("diff --git a/b.py b/b.py\n")
    _git_apply(tmp_path, patch)
    assert (tmp_path / "b.py").read_text() == "def g():\n    return 4\n"
    assert prediction_patch(hunks, [h.buggy_text for h in hunks], files) == ""


@pytest.mark.parametrize("source", ["generated", "sample"])
def test_reference_patch_restores_the_pristine_tree(source, generated, env_split, instances,
                                                    tenacity_env, tenacity_scorer, tok):
    """For every generated bug, and the real-sample rows with an environment: the scorer's
    `model_patch` of the reference fix `git apply`s to the buggy tree and gives back the
    original files byte for byte; copying gives ''."""
    rows, split = generated if source == "generated" else (instances, env_split)
    env, _ = tenacity_env
    by_id = {r.instance_id: r for r in rows}
    checked = 0
    for i, record in enumerate(split.records):
        ref = [h.fixed_text for h in record.hunks]
        outputs = reference_outputs(split, i, tok)
        scored = tenacity_scorer.score(record, outputs, outputs, ref, ref)
        assert scored.resolved is True and scored.model_patch, record.instance_id
        copied = tenacity_scorer.score(record, {}, outputs, [h.buggy_text for h in record.hunks], ref)
        assert copied.model_patch == ""
        with env.working_copy(git=False) as tree:
            pristine = {h.file: (Path(tree) / h.file).read_bytes() for h in record.hunks}
            env.apply_patch(tree, by_id[record.instance_id].patch)
            assert all((Path(tree) / f).read_bytes() != b for f, b in pristine.items())
            _git_apply(Path(tree), scored.model_patch)
            assert {f: (Path(tree) / f).read_bytes() for f in pristine} == pristine
        checked += 1
    assert checked == len(split.records) >= 4, checked


def test_regions_patch_without_whole_files_shifts_line_numbers(tmp_path):
    """Two regions of one file, the first growing by a line: the second hunk's new-side start
    moves by one; git applies it to the file it never saw whole."""
    text = "".join(f"x{i} = {i}\n" for i in range(1, 21))
    (tmp_path / "m.py").write_text(text)
    lines = text.splitlines(keepends=True)
    hunks = [Hunk("m.py", 3, "".join(lines[2:6]), "", "<module>"),
             Hunk("m.py", 12, "".join(lines[11:15]), "", "<module>")]
    first = "".join(lines[2:4]) + "y = 0\n" + "".join(lines[4:6])
    second = "".join(lines[11:13]) + "x14 = -14\n" + lines[14]
    patch = regions_patch(hunks, [first, second])
    assert "@@ -3,4 +3,5 @@" in patch and "@@ -12,4 +13,4 @@" in patch
    _git_apply(tmp_path, patch)
    want = lines[:4] + ["y = 0\n"] + lines[4:13] + ["x14 = -14\n"] + lines[14:]
    assert (tmp_path / "m.py").read_text() == "".join(want)
    assert regions_patch(hunks, [h.buggy_text for h in hunks]) == ""


def test_regions_patch_of_every_sample_hunk_restores_the_pristine_tree(instances, tenacity_env):
    """Every tenacity row of the real sample, regions = the patch's own hunks (what
    `hrm predict` has without a snapshot): the diff of their fixed texts applies to the buggy
    tree and gives back the original files."""
    from hrm.envs.errors import PatchError
    from hrm.hunks import parse_patch

    env, _ = tenacity_env
    checked = 0
    for inst in instances:
        if inst.repo != "swesmith/jd__tenacity.0d40e76f":
            continue
        hunks = parse_patch(inst.patch, source=inst.instance_id)
        patch = regions_patch(hunks, [h.fixed_text for h in hunks])
        with env.working_copy(git=False) as tree:
            pristine = {h.file: (Path(tree) / h.file).read_bytes() for h in hunks}
            try:
                env.apply_patch(tree, inst.patch)
            except PatchError:  # a few sample rows were made against another tenacity commit
                continue
            _git_apply(Path(tree), patch)
            assert {f: (Path(tree) / f).read_bytes() for f in pristine} == pristine, inst.instance_id
        checked += 1
    assert checked >= 40, checked
