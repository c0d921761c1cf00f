"""Hostile test code ends within its limits, is reported as failing with a reason, and leaves
the host and the cached environment unchanged."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from hrm.envs.environment import limits_from
from hrm.envs.sandbox import probe_isolation, sandbox_identity

TIMEOUT = 6.0


def _hostile(env, body: str, timeout_s: float = TIMEOUT):
    """Run one hostile test file in a working copy; returns (run, wall seconds, tree path)."""
    with env.working_copy() as tree:
        (tree / "tests" / "test_hostile.py").write_text(textwrap.dedent(body))
        start = time.monotonic()
        run = env.run_tests(tree, ["tests/test_hostile.py::test_hostile"], timeout_s=timeout_s)
        return run, time.monotonic() - start, tree


@pytest.fixture(scope="module")
def cache_hash_before(tenacity_env, tree_hash):
    return tree_hash(tenacity_env.root)


def test_isolation_is_namespaces_here(envs_cfg):
    label = probe_isolation(*(sandbox_identity(limits_from(envs_cfg)) or (None, None))).label
    # On this host unprivileged user namespaces work: the strong path must be in force.
    assert "netns" in label and "pidns" in label and "ro" in label, label


def test_infinite_loop_times_out(tenacity_env, cache_hash_before):
    run, wall, _ = _hostile(tenacity_env, """
        def test_hostile():
            while True:
                pass
    """)
    assert run.timed_out and not run.passed and wall < TIMEOUT + 5
    assert run.results["tests/test_hostile.py::test_hostile"].outcome == "timeout"
    assert "timeout" in run.killed_reason


def test_fork_bomb_is_contained(tenacity_env, cache_hash_before):
    run, wall, tree = _hostile(tenacity_env, """
        import os, time

        def test_hostile():
            children = 0
            while True:
                try:
                    if os.fork() == 0:
                        time.sleep(60)
                        os._exit(0)
                    children += 1
                except OSError:
                    break
            assert children < 256, children
            time.sleep(60)
    """)
    assert not run.passed and wall < TIMEOUT + 5
    left = subprocess.run(["pgrep", "-f", str(tree)], capture_output=True, text=True).stdout
    assert left.strip() == ""  # the PID namespace died with the run: no sleeper survives


def test_writes_outside_the_tree_fail(tenacity_env, repo_root, cache_hash_before, tree_hash):
    outside = repo_root / f"hostile-{uuid.uuid4().hex}.txt"
    target_src = tenacity_env.pristine / "tenacity" / "__init__.py"
    site = next((tenacity_env.root / "venv" / "lib").glob("python3*/site-packages"))
    run, _, _ = _hostile(tenacity_env, f"""
        def test_hostile():
            wrote = []
            for path in [{str(outside)!r}, {str(target_src)!r}, {str(site / 'evil.pth')!r}]:
                try:
                    with open(path, "a") as fh:
                        fh.write("pwned")
                    wrote.append(path)
                except OSError:
                    pass
            assert wrote, "every write outside the tree was refused"
    """)
    outcome = run.results["tests/test_hostile.py::test_hostile"]
    assert outcome.outcome == "failed" and "every write outside the tree was refused" in (
        outcome.message)
    assert not outside.exists()
    assert tree_hash(tenacity_env.root) == cache_hash_before


def test_network_is_unreachable(tenacity_env, cache_hash_before):
    run, _, _ = _hostile(tenacity_env, """
        import socket

        def test_hostile():
            socket.create_connection(("1.1.1.1", 80), timeout=3).close()
    """)
    outcome = run.results["tests/test_hostile.py::test_hostile"]
    assert outcome.outcome == "failed" and "unreachable" in outcome.message.lower(), outcome


def test_output_flood_is_capped(tenacity_env, envs_cfg, cache_hash_before, tree_hash):
    run, wall, _ = _hostile(tenacity_env, """
        import os

        def test_hostile():
            chunk = b"x" * (1 << 20)
            for _ in range(100):
                os.write(1, chunk)
                os.write(2, chunk)
    """)
    assert not run.passed and wall < TIMEOUT + 5
    assert len(run.output.encode()) <= envs_cfg.max_output_kb * 1024
    # pytest captures into a temp file: the file-size rlimit stops the flood at 64 MB.
    assert run.killed_reason or run.output_truncated, (run.exit_code, run.output[-300:])
    assert tree_hash(tenacity_env.root) == cache_hash_before


def test_memory_hog_is_stopped(tenacity_env, cache_hash_before):
    # The address-space limit is under test, not the timeout: zero-filling the blocks up to the
    # limit took 5-8 s on a loaded machine, so the run gets a generous wall-clock budget.
    run, _, _ = _hostile(tenacity_env, """
        def test_hostile():
            blocks = [bytearray(256 << 20) for _ in range(64)]  # 16 GB
            assert len(blocks) == 64
    """, timeout_s=60)
    outcome = run.results["tests/test_hostile.py::test_hostile"]
    assert outcome.outcome == "failed" and "MemoryError" in outcome.message


def test_cache_unchanged_after_hostile_runs(tenacity_env, cache_hash_before, tree_hash):
    assert tree_hash(tenacity_env.root) == cache_hash_before
    assert not list(Path(tenacity_env.pristine).glob("**/test_hostile.py"))


def test_fork_bomb_does_not_starve_a_concurrent_run(tenacity_env, envs_cfg):
    """RLIMIT_NPROC counts every process of a uid on the host: with one shared sandbox uid a
    fork bomb in one run made concurrent runs die at `unshare: fork failed` (all ids
    `missing`: the first shift's 6 `fails_after_revert`). Each run now leases its own uid."""
    assert envs_cfg.sandbox_uid_range is not None
    bomb_done = threading.Event()

    def bomb() -> None:
        try:
            _hostile(tenacity_env, """
                import os, time

                def test_hostile():
                    while True:
                        try:
                            if os.fork() == 0:
                                time.sleep(60)
                                os._exit(0)
                        except OSError:
                            time.sleep(60)
            """, timeout_s=8)
        finally:
            bomb_done.set()

    thread = threading.Thread(target=bomb)
    thread.start()
    try:
        time.sleep(3)  # the bomb has reached its process limit by now
        assert not bomb_done.is_set()
        with tenacity_env.working_copy() as tree:
            run = tenacity_env.run_tests(
                tree, ["tests/test_tenacity.py::TestRetryConditions::test_retry_all"])
        assert run.started and not run.sandbox_error, run.output[-300:]
        assert run.passed, run.output[-300:]
    finally:
        thread.join()


def test_a_run_that_never_reaches_pytest_is_a_sandbox_error(tenacity_env):
    """No session record from the report plugin: the run is no evidence about the tests."""
    from hrm.envs.results import TestRun

    run = TestRun(results={}, exit_code=1, timed_out=False, output_truncated=False,
                  output="unshare: fork failed: Resource temporarily unavailable\n",
                  duration_s=0.01, isolation="x", started=False)
    assert "fork failed" in run.sandbox_error and not run.passed
    with tenacity_env.working_copy() as tree:
        ok = tenacity_env.run_tests(tree, ["tests/test_tenacity.py::TestRetryConditions"
                                           "::test_retry_all"])
    assert ok.started and ok.sandbox_error == ""
