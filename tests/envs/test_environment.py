"""The tenacity environment from the sdist, the real sample rows, and the cache rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hrm.config import EnvsConfig, EnvSpec
from hrm.data.instance import read_instances
from hrm.envs import EnvironmentUnavailable, PatchError, get_environment

# Six real rows of different bug kinds, plus one that the README says does not apply to 9.0.0.
SAMPLE_IDS = [
    "jd__tenacity.0d40e76f.func_basic__7767pc66",
    "jd__tenacity.0d40e76f.combine_file__zg0hlvr9",
    "jd__tenacity.0d40e76f.func_pm_ctrl_invert_if__wwden9d5",
    "jd__tenacity.0d40e76f.func_pm_ctrl_shuffle__3ljvivv1",
    "jd__tenacity.0d40e76f.func_pm_ctrl_shuffle__d3jm9ipb",
    "jd__tenacity.0d40e76f.func_basic__rlm5c89z",
]
NOT_APPLYING = "jd__tenacity.0d40e76f.lm_rewrite__0siuyh3e"


def test_env_built_from_sdist(tenacity_env):
    tree = tenacity_env.pristine
    assert (tree / "tenacity" / "__init__.py").is_file() and (tree / "tests").is_dir()
    marker = json.loads((tenacity_env.root / "marker.json").read_text())
    assert marker["fingerprint"] == tenacity_env.fingerprint
    status = subprocess.run(["git", "-c", "safe.directory=*", "status", "--porcelain"],
                            cwd=tree, capture_output=True, text=True, check=True)
    assert status.stdout == ""  # pristine == HEAD
    # The package is imported from the tree copy, never installed into the venv.
    probe = subprocess.run([str(tenacity_env.python), "-c", "import tenacity"], cwd="/",
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'tenacity'" in probe.stderr


def test_sample_rows_apply_fail_and_pass_after_revert(tenacity_env, sample_path):
    rows = {i.instance_id: i for i in read_instances(sample_path)}
    for iid in SAMPLE_IDS:
        inst = rows[iid]
        with tenacity_env.working_copy() as tree:
            tenacity_env.apply_patch(tree, inst.patch)
            bug = tenacity_env.run_tests(tree, inst.FAIL_TO_PASS)
            assert not bug.passed and bug.exit_code == 1, iid
            assert all(r.outcome in ("failed", "error") for r in bug.results.values()), iid
            tenacity_env.apply_patch(tree, inst.patch, reverse=True)
            fixed = tenacity_env.run_tests(tree, inst.FAIL_TO_PASS)
            assert fixed.passed, (iid, fixed.counts(), fixed.output[-800:])
    with tenacity_env.working_copy() as tree, pytest.raises(PatchError, match="patch failed"):
        tenacity_env.apply_patch(tree, rows[NOT_APPLYING].patch)


def test_missing_node_id_counts_as_failing(tenacity_env):
    good = "tests/test_tenacity.py::TestStopConditions::test_stop_after_attempt"
    with tenacity_env.working_copy() as tree:
        run = tenacity_env.run_tests(tree, [good, "tests/test_tenacity.py::test_does_not_exist"])
    assert run.exit_code == 4 and not run.passed
    assert run.results["tests/test_tenacity.py::test_does_not_exist"].outcome == "missing"
    assert run.failing == [good, "tests/test_tenacity.py::test_does_not_exist"]


def test_failures_keep_their_messages_and_frames_in_native_tracebacks(tenacity_env):
    """Runs print native tracebacks (`--tb=native`, cheaper than pytest's long style): each
    failure's message is still pytest's crash line, assertion introspection included, and the
    output still shows every frame with its source line (what the evaluation's limit notes
    read), even where the project's own pytest options ask for another style."""
    with tenacity_env.working_copy() as tree:
        (tree / "tests" / "test_native.py").write_text(
            "def helper(x):\n"
            "    assert x == 2, 'x should be 2'\n\n\n"
            "def test_assert():\n"
            "    helper(3)\n\n\n"
            "def test_raise():\n"
            "    int('seven')\n")
        (tree / "pytest.ini").write_text("[pytest]\naddopts = --tb=long\n")
        run = tenacity_env.run_tests(tree, ["tests/test_native.py::test_assert",
                                            "tests/test_native.py::test_raise"])
    assert run.results["tests/test_native.py::test_assert"].message == \
        "AssertionError: x should be 2\nassert 3 == 2"
    assert run.results["tests/test_native.py::test_raise"].message == \
        "ValueError: invalid literal for int() with base 10: 'seven'"
    assert run.output.count("Traceback (most recent call last):") == 2, run.output
    assert ", in helper\n    assert x == 2, 'x should be 2'" in run.output, run.output
    assert "int('seven')" in run.output
    assert "def helper(x):" not in run.output  # the long style would print the whole function


def test_working_copy_is_fresh_and_deleted(tenacity_env):
    with tenacity_env.working_copy() as tree:
        (tree / "tenacity" / "__init__.py").write_text("broken(")
        kept = tree
    assert not kept.exists()
    with tenacity_env.working_copy() as tree:
        assert "broken(" not in (tree / "tenacity" / "__init__.py").read_text()


def test_unknown_and_image_repos_are_unavailable(tmp_path):
    """Image repos without a usable container runtime (see test_image_provider.py)."""
    cfg = EnvsConfig(cache_dir=str(tmp_path), container_runtime="no-such-runtime", repos={
        "swesmith/o__r.12345678": EnvSpec(provider="image", image="ghcr.io/x/y:1")})
    with pytest.raises(EnvironmentUnavailable, match="no entry in envs.repos"):
        get_environment("swesmith/nobody__nothing.abcdef12", cfg)
    with pytest.raises(EnvironmentUnavailable, match="needs a container runtime"):
        get_environment("swesmith/o__r.12345678", cfg)


def _git_repo(path: Path) -> str:
    (path / "pkg").mkdir(parents=True)
    (path / "pkg" / "__init__.py").write_text("def add(a, b):\n    return a + b\n")
    (path / "tests").mkdir()
    (path / "tests" / "test_add.py").write_text(
        "from pkg import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "safe.directory=*"]
    subprocess.run([*git, "init", "-q", str(path)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], cwd=path, check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], cwd=path, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_git_provider_half_built_cache_is_rebuilt(tmp_path, envs_cfg, request):
    commit = _git_repo(tmp_path / "src")
    spec = EnvSpec(provider="git", git_url=str(tmp_path / "src"), git_commit=commit,
                   source_dirs=["pkg"], test_dirs=["tests"])
    # The cache must be reachable by the sandbox user: pytest's tmp_path (0700) is not.
    cache = Path(tempfile.mkdtemp(prefix="hrm-envs-test-"))
    os.chmod(cache, 0o755)
    request.addfinalizer(lambda: shutil.rmtree(cache, ignore_errors=True))
    cfg = envs_cfg.model_copy(update={"cache_dir": str(cache),
                                      "repos": {"swesmith/t__pkg.abcdef12": spec}})
    if os.geteuid() == 0:
        with pytest.raises(EnvironmentUnavailable, match="not reachable by sandbox user"):
            get_environment("swesmith/t__pkg.abcdef12",
                            cfg.model_copy(update={"cache_dir": str(tmp_path / "c")}))
    env = get_environment("swesmith/t__pkg.abcdef12", cfg)
    assert (env.pristine / "pkg" / "__init__.py").is_file()
    # Simulate a build killed half-way: the marker is missing, a stray file is left.
    (env.root / "marker.json").unlink()
    (env.root / "stray").write_text("half-built")
    again = get_environment("swesmith/t__pkg.abcdef12", cfg)
    assert (again.root / "marker.json").exists() and not (again.root / "stray").exists()
    # The venv has no pytest here (no test_requirements): the run fails, it is not a pass.
    with again.working_copy() as tree:
        run = again.run_tests(tree, ["tests/test_add.py::test_add"], timeout_s=20)
    assert not run.passed and run.results["tests/test_add.py::test_add"].outcome == "missing"
    assert "No module named pytest" in run.output
