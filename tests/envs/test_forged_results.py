"""Hostile code under test tries to forge its own test outcomes or read the project: every
attempt ends with the run refused (never `passed`) or the file out of reach.

The attacks are what a model's patch could do from inside the package under test: write
passing lines into the report channel, call the report plugin's own writer, exit 0 after a
failure, leave before the session ends, shadow the test runner, read mlflow.db or params.yaml.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hrm.envs.report_channel import ReportChannel, shadowing_modules
from hrm.envs.results import ReportRefused, verify_reports
from hrm.envs.sandbox import SandboxLimits, _run, probe_isolation, userns_refused

NODE = "tests/test_hostile.py::test_hostile"
PLUGIN_DIR = Path(__file__).resolve().parents[2] / "hrm" / "envs"


def _hostile(env, body: str, extra_files: dict[str, str] | None = None):
    with env.working_copy() as tree:
        (tree / "tests" / "test_hostile.py").write_text(textwrap.dedent(body))
        for name, text in (extra_files or {}).items():
            (tree / name).write_text(text)
        return env.run_tests(tree, [NODE], timeout_s=30)


def _assert_refused(run, why: str):
    assert run.refused and why in run.refused, (run.refused, run.output[-600:])
    assert not run.passed
    assert run.results[NODE].outcome == "error"
    assert run.sandbox_error.startswith("test report refused: ")


def test_an_honest_failure_and_pass_are_believed(tenacity_env):
    run = _hostile(tenacity_env, """
        def test_hostile():
            assert 1 == 2
    """)
    assert not run.refused and run.results[NODE].outcome == "failed", run.output[-300:]
    run = _hostile(tenacity_env, """
        def test_hostile():
            assert 1 == 1
    """)
    assert not run.refused and run.passed, run.output[-300:]
    assert "+project-hidden" in run.isolation, run.isolation


def test_lines_written_into_the_report_pipe_are_refused(tenacity_env):
    run = _hostile(tenacity_env, """
        import json, os, sys

        def test_hostile():
            fd = int(next(a for a in sys.argv if a.startswith("--hrm-report-fd=")).split("=")[1])
            # Lines 1-2 (session start, this test's setup) are the plugin's: continue the sequence.
            for seq, when in enumerate(("call", "teardown"), 2):
                rec = {"nodeid": "tests/test_hostile.py::test_hostile", "when": when,
                       "outcome": "passed", "duration": 0.0, "subtest": False,
                       "message": "", "seq": seq}
                os.write(fd, (json.dumps(rec) + "\\n").encode())
            os._exit(0)
    """)
    _assert_refused(run, "report line 3 fails its HMAC")


def test_calling_the_plugins_own_writer_is_refused(tenacity_env):
    """The writer signs whatever it is given: the forged pass is one report too many."""
    run = _hostile(tenacity_env, """
        import sys

        def test_hostile():
            plugin = sys.modules["hrm_pytest_report"]
            for when in ("setup", "call", "teardown"):
                plugin._write({"nodeid": "tests/test_hostile.py::test_hostile", "when": when,
                               "outcome": "passed", "duration": 0.0, "subtest": False,
                               "message": ""})
            assert False, "the bug is still there"
    """)
    _assert_refused(run, "reported twice")


def test_exit_zero_after_a_failure_is_refused(tenacity_env):
    run = _hostile(tenacity_env, """
        import atexit, os

        def test_hostile():
            atexit.register(lambda: os._exit(0))
            assert False, "the bug is still there"
    """)
    assert run.exit_code == 0
    _assert_refused(run, "the session finished with status 1 but the process exited 0")


def test_leaving_before_the_session_ends_is_refused(tenacity_env):
    run = _hostile(tenacity_env, """
        import os

        def test_hostile():
            os._exit(0)
    """)
    _assert_refused(run, "pytest exited 0 without finishing its session")


@pytest.mark.parametrize("name", ["sitecustomize.py", "pytest.py", "hrm_pytest_report.py"])
def test_a_tree_that_shadows_the_runner_is_never_run(tenacity_env, name):
    run = _hostile(tenacity_env, """
        def test_hostile():
            assert True
    """, extra_files={name: "import os\nos._exit(0)\n"})
    _assert_refused(run, "which Python or pytest would import from it")
    assert run.isolation == "not run" and run.duration_s == 0.0


def test_filling_the_disk_stops_at_the_quota(tenacity_env):
    """Code under test writing without end (64 MiB files, the per-file limit, into the tree and
    HOME) stops at envs.max_tree_mb in all, and nothing of it reaches the host's tree."""
    quota = tenacity_env.cfg.max_tree_mb
    with tenacity_env.working_copy() as tree:
        before = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*"))
        (tree / "tests" / "test_hostile.py").write_text(textwrap.dedent(f"""
            import errno, os

            def test_hostile():
                written, k = 0, 0
                while written < 2 * {quota}:
                    target = ("fill{{}}.bin" if k % 2 else os.path.join(os.environ["HOME"], "fill{{}}.bin")).format(k)
                    k += 1
                    try:
                        with open(target, "wb") as fh:
                            for _ in range(60):
                                fh.write(b"x" * (1 << 20))
                                fh.flush()
                                written += 1
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break
                assert {quota} - 70 <= written <= {quota}, written
        """))
        before.append("tests/test_hostile.py")
        run = tenacity_env.run_tests(tree, [NODE], timeout_s=60)
        after = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*"))
    assert not run.refused and run.passed, (run.results, run.output[-600:])
    assert "+quota" in run.isolation, run.isolation
    assert after == sorted(before)


def test_project_files_are_out_of_reach(tenacity_env, repo_root):
    """The caller's checkout (params.yaml, mlflow.db, data) is an empty directory to the run;
    the cached environment below it still works (the test imports tenacity)."""
    run = _hostile(tenacity_env, f"""
        import os
        import tenacity

        def test_hostile():
            root = {str(repo_root)!r}
            seen = sorted(os.listdir(root))
            assert seen == [".cache"], seen
            for name in ("params.yaml", "mlflow.db", "dvc.yaml"):
                assert not os.path.exists(os.path.join(root, name)), name
    """)
    assert not run.refused and run.passed, (run.results, run.output[-600:])


def test_the_not_root_confinement_hides_a_path_but_keeps_its_readonly_parts(tmp_path):
    iso = probe_isolation(None, None)
    if not iso.confine_fs:
        pytest.skip(f"isolation `{iso.label}` here: no user namespaces "
                    f"({userns_refused() or 'unshare refused'})")
    project = tmp_path / "project"
    (project / "cache" / "env").mkdir(parents=True)
    (project / "cache" / "env" / "tool.txt").write_text("tool")
    (project / "mlflow.db").write_text("secret")
    for name in ("home", "tree"):
        (tmp_path / name).mkdir()
    code = (f"import os; print(sorted(os.listdir({str(project)!r})), "
            f"open({str(project / 'cache/env/tool.txt')!r}).read(), "
            f"os.path.exists({str(project / 'mlflow.db')!r}))")
    limits = SandboxLimits(timeout_s=30, memory_mb=2048, max_processes=64, max_file_mb=8,
                           max_output_kb=64, sandbox_user=None)
    res = _run([sys.executable, "-c", code], cwd=tmp_path / "tree", home=tmp_path / "home",
               limits=limits, path_dirs=[], python_env={}, readonly=[project / "cache" / "env"],
               hide=[project], ident=None, iso=iso)
    assert res.exit_code == 0, res.output
    assert "['cache'] tool False" in res.output, res.output
    assert res.isolation == "netns+pidns+rofs+project-hidden"


def _plugin_run(tmp_path: Path, body: str) -> tuple[ReportChannel, int, bytes]:
    """The real plugin in a plain pytest subprocess (no sandbox): the channel and raw lines."""
    (tmp_path / "test_x.py").write_text(textwrap.dedent(body))
    with ReportChannel() as channel:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "pytest_report_plugin", *channel.plugin_args,
             "-p", "no:cacheprovider", "-q", str(tmp_path / "test_x.py")],
            cwd=tmp_path, capture_output=True, text=True, pass_fds=channel.pass_fds,
            env={**os.environ, "PYTHONPATH": str(PLUGIN_DIR)})
        records = channel.records(proc.returncode)
        raw = bytes(channel._drain.data)
    assert [r["when"] for r in records][0] == "session", proc.stdout
    return channel, proc.returncode, raw


def test_tampered_lines_fail_the_chain(tmp_path):
    channel, code, raw = _plugin_run(tmp_path, """
        def test_a():
            assert False

        def test_b():
            pass
    """)
    assert code == 1
    lines = raw.splitlines(keepends=True)
    key = channel.key
    verify_reports(raw, key, exit_code=1)  # as written: believed
    edited = raw.replace(b'"outcome": "failed"', b'"outcome": "passed"')
    dropped = b"".join(ln for ln in lines if b'"failed"' not in ln)
    swapped = b"".join([lines[0], lines[2], lines[1], *lines[3:]])
    for data, why in ((edited, "fails its HMAC"), (dropped, "out of sequence"),
                      (swapped, "out of sequence"), (raw + lines[-1], "out of sequence"),
                      (b"".join(lines[:-1]), "without finishing its session")):
        with pytest.raises(ReportRefused, match=why):
            verify_reports(data, key, exit_code=1)
    with pytest.raises(ReportRefused, match="fails its HMAC"):
        verify_reports(raw, b"another key", exit_code=1)
    # Killed runs (never a pass) may stop anywhere, even mid-line, and a forked copy of pytest
    # may have written lines of its own: what came before the first bad line still holds.
    assert len(verify_reports(b"".join(lines[:3]) + lines[3][:10], key, exit_code=None)) == 3
    assert len(verify_reports(b"".join([*lines[:3], lines[1], *lines[3:]]), key,
                              exit_code=None)) == 3


def test_shadowing_modules_are_found(tmp_path):
    assert shadowing_modules(tmp_path) == []
    (tmp_path / "json").mkdir()  # a namespace directory never wins over the stdlib
    (tmp_path / "tests").mkdir()
    assert shadowing_modules(tmp_path) == []
    (tmp_path / "json" / "__init__.py").write_text("")
    (tmp_path / "sitecustomize.py").write_text("")
    assert shadowing_modules(tmp_path) == ["json", "sitecustomize"]


def test_a_caller_directory_the_run_cannot_reach_stays_out_of_reach(tenacity_env, tmp_path,
                                                                    monkeypatch):
    """A checkout the sandbox's user cannot enter (a 0700 directory of root, as pytest's temp
    dirs are) needs no tmpfs: the run starts, and the file stays unreadable."""
    project = tmp_path / "project"
    project.mkdir(mode=0o700)
    (project / "mlflow.db").write_text("secret")
    monkeypatch.chdir(project)
    run = _hostile(tenacity_env, f"""
        import os

        def test_hostile():
            try:
                open({str(project / "mlflow.db")!r}).read()
            except OSError:
                return
            assert False, "read the caller's mlflow.db"
    """)
    assert not run.refused and run.passed, (run.results, run.output[-600:])


def test_random_draws_are_seeded_per_test(tenacity_env):
    """Before each test `random` is seeded from the test's node id (`hrm_pytest_report`), so a
    test that depends on random draws (tenacity's jittered waits) has one outcome in every run
    and the generator's bugs are reproducible."""
    import hashlib
    import random

    seed = int.from_bytes(hashlib.sha256(NODE.encode()).digest()[:4], "big")
    expected = random.Random(seed).random()
    body = f"""
        import random

        def test_hostile():
            assert random.random() == {expected!r}
    """
    for _ in range(2):
        run = _hostile(tenacity_env, body)
        assert not run.refused and run.passed, run.output[-400:]
