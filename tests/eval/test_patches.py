"""Predictions as unified diffs: `model_patch` applies with `git apply` to the buggy tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hrm.eval.patches import NO_NEWLINE, file_diff, prediction_patch
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
