"""A synth worker reuses one working copy across candidates (`_worker_tree`/`_release_tree`),
not a fresh copy per test run. This checks that the reuse is safe: whatever a candidate's test
run leaves in the copy (an untracked or ignored file, a change to another tracked file, a
deleted file), the next candidate starts from a tree identical to the pristine one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hrm.envs.providers import GIT_IDENTITY
from hrm.synth import generator as gen

TENACITY = "swesmith/jd__tenacity.0d40e76f"  # as in conftest.synth_params


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root except `.git`, path -> content (symlinks by target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == root and d == ".git")]
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            out[rel] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return out


def _assert_pristine(env, tree: Path) -> None:
    status = subprocess.run(["git", *GIT_IDENTITY, "status", "--porcelain",
                             "--untracked-files=all", "--ignored"],
                            cwd=tree, capture_output=True, text=True, check=True)
    assert status.stdout == ""
    assert _files(tree) == _files(env.pristine)


@pytest.fixture
def worker(synth_params):
    """This process as a synth worker (the state `_init_worker` sets up in a pool process)."""
    saved = dict(gen._W)
    gen._W.clear()
    gen._init_worker(synth_params.envs.model_dump_json(), 5)
    env = gen._worker_env(TENACITY)
    site = gen.ordered_sites(env, 0)[0]
    source = (env.pristine / site.file).read_text(encoding="utf-8")
    yield env, site, source
    for tree in gen._W["trees"].values():
        shutil.rmtree(tree.parent, ignore_errors=True)
    gen._W.clear()
    gen._W.update(saved)


def _other_tracked(env, site) -> str:
    return next(p for p in ("tenacity/stop.py", "tenacity/wait.py") if p != site.file)


LEFTOVERS = {
    "untracked file": lambda tree, other: (tree / "leak.txt").write_text("x"),
    "untracked file in a new directory": lambda tree, other: (
        (tree / "newdir" / "deep").mkdir(parents=True),
        (tree / "newdir" / "deep" / "f.py").write_text("x")),
    "ignored file": lambda tree, other: (tree / "tenacity" / "evil.pyc").write_bytes(b"x"),
    "ignored directory": lambda tree, other: (
        (tree / ".pytest_cache").mkdir(), (tree / ".pytest_cache" / "v").write_text("x")),
    "another tracked file modified": lambda tree, other: (
        (tree / other).write_text((tree / other).read_text() + "\nraise SystemExit\n")),
    "another tracked file deleted": lambda tree, other: (tree / other).unlink(),
}


@pytest.mark.parametrize("leftover", sorted(LEFTOVERS))
def test_a_dirty_copy_is_discarded_and_the_next_candidate_gets_a_pristine_tree(worker,
                                                                               leftover):
    env, site, source = worker
    tree = gen._worker_tree(env)
    _assert_pristine(env, tree)
    (tree / site.file).write_text(source + "\n# mutated\n", encoding="utf-8")
    LEFTOVERS[leftover](tree, _other_tracked(env, site))
    gen._release_tree(env, tree, site, source)
    assert TENACITY not in gen._W["trees"] and not tree.parent.exists()  # the copy is gone
    fresh = gen._worker_tree(env)
    _assert_pristine(env, fresh)


def test_a_clean_candidate_keeps_its_copy(worker):
    """The control: only the mutated file changed, so the copy is restored and reused."""
    env, site, source = worker
    tree = gen._worker_tree(env)
    (tree / site.file).write_text(source + "\n# mutated\n", encoding="utf-8")
    gen._release_tree(env, tree, site, source)
    assert gen._worker_tree(env) == tree
    _assert_pristine(env, tree)


def test_files_written_by_a_sandboxed_test_run_are_discarded(worker):
    """End to end: the mutated module itself, imported by the sandboxed test run, writes an
    untracked and an ignored file into the copy and rewrites another tracked file. Under the
    disk quota (envs.max_tree_mb) none of it reaches the copy; with the writes kept (the
    baseline's mode) the worker's release puts the copy back."""
    env, site, source = worker
    tree = gen._worker_tree(env)
    other = _other_tracked(env, site)
    hostile = source + (
        "\nimport os as _os\n"
        "_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))\n"
        "open(_os.path.join(_root, 'leak.txt'), 'w').write('x')\n"
        "open(_os.path.join(_root, 'tenacity', 'leak.pyc'), 'w').write('x')\n"
        f"open(_os.path.join(_root, {other!r}), 'a').write('# touched\\n')\n"
    )
    (tree / site.file).write_text(hostile, encoding="utf-8")
    node = ["tests/test_tenacity.py::TestRetryConditions::test_retry_all"]
    run = env.run_tests(tree, node, timeout_s=30)
    assert run.started and "+quota" in run.isolation, run.output[-500:]
    assert not (tree / "leak.txt").exists() and not (tree / "tenacity" / "leak.pyc").exists()
    assert "# touched" not in (tree / other).read_text()
    run = env.run_tests(tree, node, timeout_s=30, keep_writes=True)
    assert run.started and "+quota" not in run.isolation, run.output[-500:]
    assert (tree / "leak.txt").exists() and (tree / "tenacity" / "leak.pyc").exists(), \
        run.output[-500:]
    gen._release_tree(env, tree, site, source)
    assert TENACITY not in gen._W["trees"] and not tree.parent.exists()
    _assert_pristine(env, gen._worker_tree(env))
