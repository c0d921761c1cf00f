"""The `image` provider's contract: the image comes from the instance's `image_name`, each test
run is one exact container command line, and without a usable container runtime it fails
with an error naming what is missing (this machine has a docker CLI but no daemon, and no
podman). A stub runtime that runs the container command on the host checks the plumbing
(tree extraction, patching, the report plugin, timeouts) end to end."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hrm.config import EnvsConfig, EnvSpec
from hrm.envs import (
    ContainerRuntimeUnavailable,
    Environment,
    EnvironmentUnavailable,
    ImageEnvironment,
    RepoEnvironment,
    get_environment,
)
from hrm.envs.image import (
    IMAGE_PYTHON,
    RUNTIMES,
    _find_runtime,
    container_run_argv,
    extract_argvs,
    image_from_repo_id,
    resolve_image,
)
from hrm.envs.sandbox import SandboxLimits

TENACITY = "swesmith/jd__tenacity.0d40e76f"
TENACITY_IMAGE = "jyangballin/swesmith.x86_64.jd_1776_tenacity.0d40e76f"
SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "swe-smith" / \
    "sample.jsonl"


def _cfg(tmp_path: Path, runtime: str | None = None, image: str | None = None) -> EnvsConfig:
    return EnvsConfig(cache_dir=str(tmp_path / "cache"), container_runtime=runtime,
                      repos={TENACITY: EnvSpec(provider="image", image=image)})


# ---------------------------------------------------------------- image resolution -------
def test_image_is_the_instances_image_name():
    spec = EnvSpec(provider="image", image="registry.local/fallback:1")
    own = "jyangballin/swesmith.x86_64.other_1776_repo.12345678"
    assert resolve_image(TENACITY, own, spec) == own
    assert resolve_image(TENACITY, "", spec) == "registry.local/fallback:1"
    assert resolve_image(TENACITY, "", EnvSpec(provider="image")) == TENACITY_IMAGE


def test_derived_image_matches_swe_smith_for_every_sample_row():
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} not present")
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    smith = [r for r in rows if r["image_name"].startswith("jyangballin/")]
    assert len(smith) >= 50
    for row in smith:
        assert image_from_repo_id(row["repo"]) == row["image_name"]
        assert resolve_image(row["repo"], row["image_name"],
                             EnvSpec(provider="image")) == row["image_name"]


@pytest.mark.parametrize("bad", ["--privileged", "a b", "img;rm -rf /", "-v/:/x"])
def test_image_names_that_are_not_references_are_refused(bad):
    with pytest.raises(EnvironmentUnavailable, match="not an image reference"):
        resolve_image(TENACITY, bad, EnvSpec(provider="image"))


def test_a_non_swe_smith_repo_id_needs_an_image():
    with pytest.raises(EnvironmentUnavailable, match="not a SWE-smith id"):
        resolve_image("local/pkg", "", EnvSpec(provider="image"))


# ---------------------------------------------------------------- the command lines ------
LIMITS = SandboxLimits(timeout_s=60, memory_mb=2048, max_processes=256, max_file_mb=64,
                       max_output_kb=256)


def test_the_exact_container_command_line():
    argv = container_run_argv(
        "docker", TENACITY_IMAGE, tree=Path("/w/tree"), report_dir=Path("/w/run"),
        node_ids=["tests/test_a.py::test_x", "tests/test_b.py"], limits=LIMITS, name="hrm-run-1")
    assert argv == [
        "docker", "run", "--rm", "--name", "hrm-run-1",
        "--network", "none",
        "--read-only",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--memory", "2048m", "--memory-swap", "2048m",
        "--pids-limit", "256",
        "--ulimit", "fsize=67108864",
        "--ulimit", "core=0",
        "-v", "/w/tree:/testbed:rw",
        "-v", "/w/run:/hrm:rw",
        "-w", "/testbed",
        "-e", "HOME=/tmp", "-e", "TMPDIR=/tmp",
        "-e", "PYTHONPATH=/testbed:/hrm",
        "-e", "PYTHONDONTWRITEBYTECODE=1", "-e", "PYTHONNOUSERSITE=1",
        "-e", "PYTHONHASHSEED=0",
        "--entrypoint", "timeout",
        TENACITY_IMAGE,
        "-k", "5", "60",
        "/opt/miniconda3/envs/testbed/bin/python", "-m", "pytest", "-p", "hrm_pytest_report",
        "--hrm-report=/hrm/report.jsonl", "--rootdir=/testbed",
        "-p", "no:cacheprovider", "-q", "--tb=native", "--no-header",
        "-rN", "tests/test_a.py::test_x", "tests/test_b.py",
    ]


def test_the_command_line_refuses_option_like_node_ids_and_images():
    kw = dict(tree=Path("/w/tree"), report_dir=Path("/w/run"), limits=LIMITS, name="n")
    with pytest.raises(ValueError, match="must not start with '-'"):
        container_run_argv("podman", TENACITY_IMAGE, node_ids=["--co"], **kw)
    with pytest.raises(ValueError, match="at least one node id"):
        container_run_argv("podman", TENACITY_IMAGE, node_ids=[], **kw)
    with pytest.raises(ValueError, match="not an image reference"):
        container_run_argv("podman", "--privileged", node_ids=["t"], **kw)


def test_the_exact_extraction_command_lines():
    assert extract_argvs("podman", TENACITY_IMAGE, Path("/c/tree"), "hrm-extract-1") == [
        ["podman", "create", "--name", "hrm-extract-1", "--network", "none", TENACITY_IMAGE],
        ["podman", "cp", "hrm-extract-1:/testbed/.", "/c/tree"],
        ["podman", "rm", "-f", "hrm-extract-1"],
    ]


# ---------------------------------------------------------------- no runtime -------------
def test_no_runtime_on_path_is_a_clear_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ContainerRuntimeUnavailable) as err:
        get_environment(TENACITY, _cfg(tmp_path), image_name=TENACITY_IMAGE)
    assert isinstance(err.value, EnvironmentUnavailable)
    assert "needs a container runtime" in err.value.reason
    assert "docker: not found on PATH" in err.value.reason
    assert "podman: not found on PATH" in err.value.reason


def test_a_configured_runtime_that_is_missing_is_named(tmp_path):
    with pytest.raises(ContainerRuntimeUnavailable, match="nerdctl-nowhere: not found on PATH"):
        get_environment(TENACITY, _cfg(tmp_path, runtime="nerdctl-nowhere"))


def test_on_this_host_the_image_provider_names_the_missing_runtime(tmp_path):
    """The real probe (no stub, no PATH change)."""
    if _find_runtime(RUNTIMES, os.environ.get("PATH", ""))[0] is not None:
        pytest.skip("a container runtime works on this host")
    with pytest.raises(ContainerRuntimeUnavailable) as err:
        get_environment(TENACITY, _cfg(tmp_path), image_name=TENACITY_IMAGE)
    for runtime in RUNTIMES:
        assert f"{runtime}: " in err.value.reason  # each one tried, with why it is unusable
    assert "needs a container runtime" in str(err.value)


# ---------------------------------------------------------------- stub runtime -----------
STUB = textwrap.dedent('''\
    #!{python}
    """A container runtime stand-in: logs its argv; `run` executes the container command on
    the host with the mounts mapped back to host paths (no isolation: tests only)."""
    import json, os, shutil, subprocess, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_RT_LOG"], "a") as fh:
        fh.write(json.dumps(args) + "\\n")
    if args[0] in ("info", "create", "rm"):
        sys.exit(0)
    if args[0] == "cp":
        shutil.copytree(os.environ["FAKE_RT_IMAGE_TREE"], args[2], dirs_exist_ok=True)
        sys.exit(0)
    assert args[0] == "run", args
    mounts, env, workdir, i = {{}}, {{}}, "/", 1
    while True:
        a = args[i]
        if a == "-v":
            host, ctr, _ = args[i + 1].split(":")
            mounts[ctr] = host
        elif a == "-e":
            k, v = args[i + 1].split("=", 1)
            env[k] = v
        elif a == "-w":
            workdir = args[i + 1]
        elif a == "--entrypoint":
            entry = args[i + 1]
        elif a in ("--rm", "--read-only"):
            i += 1
            continue
        elif not a.startswith("-"):
            rest = args[i + 1:]
            break
        i += 2

    def host(s):
        if s == {image_python!r}:
            return sys.executable
        if s.startswith("--") and "=" in s:
            opt, _, value = s.partition("=")
            return opt + "=" + host(value)
        parts = []
        for p in s.split(":"):
            for ctr, h in mounts.items():
                if p == ctr or p.startswith(ctr + "/"):
                    p = h + p[len(ctr):]
                    break
            parts.append(p)
        return ":".join(parts)

    env = {{k: host(v) for k, v in env.items() if k not in ("HOME", "TMPDIR")}}
    env["PATH"] = os.environ["PATH"]
    sys.exit(subprocess.run([entry, *map(host, rest)], cwd=host(workdir), env=env).returncode)
''')


@pytest.fixture
def stub(tmp_path, monkeypatch):
    """(envs config using the stub runtime, argv log path)."""
    image_tree = tmp_path / "image-testbed"
    (image_tree / "pkg").mkdir(parents=True)
    (image_tree / "pkg" / "__init__.py").write_text("def add(a, b):\n    return a + b\n")
    (image_tree / "tests").mkdir()
    (image_tree / "tests" / "test_add.py").write_text(
        "import time\nfrom pkg import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_slow():\n    time.sleep(30)\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "safe.directory=*"]
    subprocess.run([*git, "init", "-q", str(image_tree)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=image_tree, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], cwd=image_tree, check=True)
    runtime = tmp_path / "bin" / "fake-runtime"
    runtime.parent.mkdir()
    runtime.write_text(STUB.format(python=sys.executable, image_python=IMAGE_PYTHON))
    runtime.chmod(runtime.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "runtime.log"
    monkeypatch.setenv("FAKE_RT_LOG", str(log))
    monkeypatch.setenv("FAKE_RT_IMAGE_TREE", str(image_tree))
    return _cfg(tmp_path, runtime=str(runtime)), log


BUG = textwrap.dedent("""\
    diff --git a/pkg/__init__.py b/pkg/__init__.py
    --- a/pkg/__init__.py
    +++ b/pkg/__init__.py
    @@ -1,2 +1,2 @@
     def add(a, b):
    -    return a + b
    +    return a - b
    """)


def test_stub_runtime_end_to_end(stub):
    cfg, log = stub
    env = get_environment(TENACITY, cfg, image_name=TENACITY_IMAGE)
    assert isinstance(env, ImageEnvironment) and isinstance(env, Environment)
    assert env.image == TENACITY_IMAGE and len(env.fingerprint) == 16
    with env.working_copy() as tree:
        env.apply_patch(tree, BUG)
        assert "a - b" in env.diff(tree)
        bug = env.run_tests(tree, ["tests/test_add.py::test_add"])
        env.apply_patch(tree, BUG, reverse=True)
        fixed = env.run_tests(tree, ["tests/test_add.py::test_add"])
    assert bug.started and not bug.passed, bug.output
    assert bug.results["tests/test_add.py::test_add"].outcome == "failed", bug.all_tests
    assert "assert" in bug.results["tests/test_add.py::test_add"].message
    assert fixed.passed and fixed.isolation.startswith("container:fake-runtime")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    verbs = [c[0] for c in calls]
    assert verbs.count("create") == verbs.count("cp") == 1  # extracted once, then cached
    runs = [c for c in calls if c[0] == "run"]
    assert len(runs) == 2
    # What ran is exactly the pure command line (modulo the per-run paths and name).
    first = runs[0]
    name = first[first.index("--name") + 1]
    tree_mount = first[first.index("-v") + 1].split(":")[0]
    report = first[first.index("-v", first.index("-v") + 1) + 1].split(":")[0]
    assert [cfg.container_runtime, *first] == container_run_argv(
        cfg.container_runtime, TENACITY_IMAGE, tree=Path(tree_mount), report_dir=Path(report),
        node_ids=["tests/test_add.py::test_add"],
        limits=SandboxLimits(timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb,
                             max_processes=cfg.max_processes, max_file_mb=cfg.max_file_mb,
                             max_output_kb=cfg.max_output_kb),
        name=name)
    # A second environment object reuses the extracted tree.
    again = get_environment(TENACITY, cfg, image_name=TENACITY_IMAGE)
    with again.working_copy(git=False) as tree:
        assert not (tree / ".git").exists() and (tree / "pkg" / "__init__.py").exists()
    verbs = [json.loads(line)[0] for line in log.read_text().splitlines()]
    assert verbs.count("create") == 1


def test_stub_runtime_timeout_is_reported(stub):
    cfg, _ = stub
    env = get_environment(TENACITY, cfg)
    with env.working_copy() as tree:
        run = env.run_tests(tree, ["tests/test_add.py::test_slow"], timeout_s=2)
    assert run.timed_out and not run.passed and "timeout" in run.killed_reason
    assert run.results["tests/test_add.py::test_slow"].outcome == "timeout"


def test_local_providers_satisfy_the_protocol(tenacity_env):
    assert isinstance(tenacity_env, RepoEnvironment) and isinstance(tenacity_env, Environment)
