"""Hostile test code ends within its limits, is reported as failing with a reason, and leaves
the host and the cached environment unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from hrm.envs.sandbox import (
    Isolation,
    SandboxLimits,
    _run,
    isolation_for,
    limits_from,
    probe_isolation,
    sandbox_identity,
    userns_refused,
)

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
    ident = sandbox_identity(limits_from(envs_cfg))
    label = probe_isolation(*(ident or (None, None))).label
    refused = userns_refused(*(ident or (None, None)))
    if refused and "netns" not in label:
        pytest.skip(f"unprivileged user namespaces are refused on this host ({refused}): runs "
                    f"use the weaker fallback `{label}`, which the other tests here exercise")
    # Where unprivileged user namespaces work the strong path must be in force.
    if ident is not None:  # root: drop to a leased uid, and the filesystem read-only as well
        assert label == "uid+netns+pidns+rofs", label
    else:  # not root: the whole filesystem read-only outside the tree and HOME
        assert label == "netns+pidns+rofs", label


def _skip_unless_fs_confined(envs_cfg) -> Isolation:
    iso = isolation_for(limits_from(envs_cfg))
    if not iso.fs_confined:
        pytest.skip(f"isolation `{iso.label}`: not root and no user/mount namespaces "
                    f"({userns_refused() or 'unshare refused'}), so writes outside the tree are "
                    "not confined on this host (weak fallback)")
    return iso


def test_infinite_loop_times_out(tenacity_env, cache_hash_before):
    run, wall, _ = _hostile(tenacity_env, """
        def test_hostile():
            while True:
                pass
    """)
    assert run.timed_out and not run.passed and wall < TIMEOUT + 5
    assert run.results["tests/test_hostile.py::test_hostile"].outcome == "timeout"
    assert "timeout" in run.killed_reason


def test_fork_bomb_is_contained(tenacity_env, envs_cfg, cache_hash_before):
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
                except OSError as err:
                    raise AssertionError(f"fork failed after {children} children: {err}")
    """)
    assert not run.passed and wall < TIMEOUT + 5
    # The reason is the process limit (RLIMIT_NPROC: fork fails with EAGAIN), not a timeout
    # or some unrelated crash.
    result = run.results["tests/test_hostile.py::test_hostile"]
    assert result.outcome == "failed", (result, run.killed_reason, run.output[-500:])
    assert "fork failed after" in result.message, result.message
    assert "Resource temporarily unavailable" in result.message, result.message
    children = int(result.message.split("fork failed after ")[1].split()[0])
    assert children < envs_cfg.max_processes, result.message
    assert not run.timed_out and run.killed_reason == ""
    left = subprocess.run(["pgrep", "-f", str(tree)], capture_output=True, text=True).stdout
    assert left.strip() == ""  # the PID namespace died with the run: no sleeper survives


def test_writes_outside_the_tree_fail(tenacity_env, envs_cfg, repo_root, cache_hash_before,
                                      tree_hash):
    _skip_unless_fs_confined(envs_cfg)
    outside = repo_root / f"hostile-{uuid.uuid4().hex}.txt"
    in_home = Path.home() / f"hostile-{uuid.uuid4().hex}.txt"
    target_src = tenacity_env.pristine / "tenacity" / "__init__.py"
    site = next((tenacity_env.root / "venv" / "lib").glob("python3*/site-packages"))
    world = [Path(d) / f"hostile-{uuid.uuid4().hex}.txt" for d in ("/tmp", "/var/tmp")]
    paths = [str(outside), str(in_home), str(target_src), str(site / "evil.pth"), *map(str, world)]
    run, _, _ = _hostile(tenacity_env, f"""
        import os, subprocess

        def test_hostile():
            # Root inside its namespace, the run tries to undo the read-only mounts first.
            for path in {paths!r}:
                for args in (["umount", "-l"], ["mount", "-o", "remount,bind,rw"]):
                    try:
                        subprocess.run(args + [os.path.dirname(path)], capture_output=True)
                    except OSError:
                        pass
            wrote = []
            for path in {paths!r}:
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
    assert not outside.exists() and not in_home.exists()
    assert not any(p.exists() for p in world)  # world-writable, yet refused (root's uid too)
    assert tree_hash(tenacity_env.root) == cache_hash_before


def test_network_is_unreachable(tenacity_env, cache_hash_before):
    run, _, _ = _hostile(tenacity_env, """
        import socket

        def test_hostile():
            socket.create_connection(("1.1.1.1", 80), timeout=3).close()
    """)
    outcome = run.results["tests/test_hostile.py::test_hostile"]
    assert outcome.outcome == "failed" and "unreachable" in outcome.message.lower(), outcome


def test_fallback_network_guard_says_unreachable(tmp_path):
    """Without network namespaces a `sitecustomize` refuses inet connects, with the same
    "Network is unreachable" a real empty network namespace gives."""
    (tmp_path / "home").mkdir()
    (tmp_path / "tree").mkdir()
    limits = SandboxLimits(timeout_s=30, memory_mb=2048, max_processes=64, max_file_mb=8,
                           max_output_kb=64, sandbox_user=None)
    code = "import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)"
    res = _run([sys.executable, "-c", code], cwd=tmp_path / "tree", home=tmp_path / "home",
               limits=limits, path_dirs=[], python_env={}, readonly=[], ident=None,
               iso=Isolation(None, None, [], "sitecustomize-net+unconfined-fs"))
    assert res.exit_code not in (0, None), res.output
    assert "Network is unreachable (network disabled by the hrm sandbox)" in res.output, (
        res.output)


def _confined(tmp_path, code: str, readonly=(), quota_mb=None):
    """Run `code` under the not-root confinement (`netns+pidns+rofs`), as whoever we are."""
    iso = probe_isolation(None, None)
    if not iso.confine_fs:
        pytest.skip(f"isolation `{iso.label}` here: no user namespaces to confine the "
                    f"filesystem with ({userns_refused() or 'unshare refused'})")
    for name in ("home", "tree"):
        (tmp_path / name).mkdir(exist_ok=True)
    limits = SandboxLimits(timeout_s=30, memory_mb=2048, max_processes=64, max_file_mb=8,
                           max_output_kb=64, sandbox_user=None, max_tree_mb=quota_mb)
    return _run([sys.executable, "-c", code], cwd=tmp_path / "tree", home=tmp_path / "home",
                limits=limits, path_dirs=[], python_env={}, readonly=list(readonly),
                ident=None, iso=iso)


def test_quota_bounds_what_the_tree_and_home_take_together(tmp_path):
    """With a quota the tree and HOME are overlays over one tmpfs: 6 MiB in the tree and 6 in
    HOME stop at 8 MiB in all (ENOSPC), relative writes and rewrites work inside, and the host's
    tree is left exactly as it was."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "keep.txt").write_text("original")
    res = _confined(tmp_path, """if True:
        import os
        print("read", open("keep.txt").read())
        open("keep.txt", "w").write("changed")
        print("reread", open("keep.txt").read())
        def fill(path, mib):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                return sum(os.write(fd, b"x" * (1 << 20)) >> 20 for _ in range(mib))
            except OSError as exc:
                print("stopped", exc.errno)
                return os.fstat(fd).st_size >> 20
            finally:
                os.close(fd)
        written = fill("fill.bin", 6) + fill(os.path.join(os.environ["HOME"], "fill.bin"), 6)
        print("written", written, "MiB")
    """, quota_mb=8)
    assert res.exit_code == 0 and res.isolation == "netns+pidns+rofs+quota", res.output
    assert "read original" in res.output and "reread changed" in res.output, res.output
    assert "stopped 28" in res.output, res.output  # ENOSPC
    written = int(res.output.split("written ", 1)[1].split()[0])
    assert 6 <= written < 8, res.output
    assert sorted(p.name for p in (tmp_path / "tree").iterdir()) == ["keep.txt"]
    assert (tmp_path / "tree" / "keep.txt").read_text() == "original"
    assert not (tmp_path / "home" / "fill.bin").exists()


def test_confined_filesystem_is_read_only_outside_tree_and_home(tmp_path):
    """The not-root path (also checked here when root, with no uid drop): only the tree, HOME
    and /dev stay writable, the host's processes are not visible in /proc, and remounting
    read-write from inside is refused."""
    res = _confined(tmp_path, f"""if True:
        import os, subprocess
        subprocess.run(["mount", "-o", "remount,bind,rw", "/"], capture_output=True)
        for path in [{str(tmp_path / "outside")!r}, {str(tmp_path / "tree" / "in")!r},
                     {str(tmp_path / "home" / "in")!r}, "/dev/null"]:
            try:
                open(path, "w").close()
                print("wrote", path)
            except OSError as exc:
                print("refused", path, exc.errno)
        try:  # relative to the working directory, the tree
            open("relative-in-tree", "w").close()
            print("wrote relative")
        except OSError as exc:
            print("refused relative", exc.errno)
        print("maxpid", max(int(p) for p in os.listdir("/proc") if p.isdigit()), "end")
    """)
    assert res.exit_code == 0 and res.isolation == "netns+pidns+rofs", res.output
    assert f"refused {tmp_path / 'outside'} 30" in res.output, res.output  # EROFS
    for path in (tmp_path / "tree" / "in", tmp_path / "home" / "in", "/dev/null"):
        assert f"wrote {path}" in res.output, res.output
    assert not (tmp_path / "outside").exists()
    assert "wrote relative" in res.output and (tmp_path / "tree" / "relative-in-tree").exists(), res.output
    # A fresh /proc: no host /proc/<pid>/root to reach the host's writable mounts through.
    assert int(res.output.split("maxpid ", 1)[1].split()[0]) < 10, res.output


def test_confined_run_fails_loudly_when_the_filesystem_cannot_be_confined(tmp_path):
    """A setup that cannot confine the filesystem never runs the command: exit 97 with the
    reason (pytest never starts: `TestRun.sandbox_error`), never an unconfined run."""
    res = _confined(tmp_path, "print('ran unconfined')", readonly=[tmp_path / "missing"])
    assert res.exit_code == 97 and "hrm sandbox: cannot confine" in res.output, res.output
    assert "ran unconfined" not in res.output


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
    if sandbox_identity(limits_from(envs_cfg)) is None:
        pytest.skip("not root: every run is the caller's own uid, so concurrent runs share one "
                    "RLIMIT_NPROC budget (per-run uids need root)")
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
