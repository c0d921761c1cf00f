"""The `image` provider: an instance's SWE-smith container image, tests run by a container CLI.

Contract (docs/envs.md, "The `image` provider"):

- Image: the instance's `image_name` (SWE-smith publishes one per repo state, e.g.
  `jyangballin/swesmith.x86_64.jd_1776_tenacity.0d40e76f`); if empty, `envs.repos[id].image`;
  else the SWE-smith name derived from the repo id (`image_from_repo_id`).
- Tree: SWE-smith images hold the repository at `/testbed` (a git checkout of the pristine
  state) and its test environment in the conda env `testbed`. The tree is copied out of the
  image once into the cache (`<cache>/images/<image slug>/tree`); every working copy is a
  fresh host copy of it, so patches are applied on the host with `git apply` as for the local
  providers.
- Tests: each run is one fresh container (`container_run_argv`, a pure function): no network,
  read-only root filesystem, the working copy mounted at `/testbed`, all capabilities
  dropped, no-new-privileges, memory / pids / file-size limits from `envs`, a wall-clock
  limit inside (`timeout -k`) and outside (`<runtime> rm -f` on expiry).
- Runtime: `envs.container_runtime`, or the first of docker, podman whose `info` succeeds.
  With none usable (this development machine: a docker CLI without a daemon, no podman) the
  provider raises EnvironmentUnavailable naming each runtime tried and why it failed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hrm.config import EnvsConfig, EnvSpec
from hrm.envs.errors import EnvironmentUnavailable
from hrm.envs.providers import (
    build_lock,
    commit_pristine,
    copy_of,
    git_apply,
    git_diff,
    run_checked,
)
from hrm.envs.results import (
    ReportRefused,
    TestRun,
    aggregate,
    refused_results,
    select,
    verify_reports,
)
from hrm.envs.sandbox import SandboxLimits, limits_from

SWESMITH_IMAGE_PREFIX = "jyangballin/swesmith.x86_64."
"""SWE-smith's published images: `{prefix}{owner}_1776_{repo}.{commit8}` (lowercase)."""

IMAGE_WORKDIR = "/testbed"
"""Where SWE-smith (and SWE-bench) images hold the repository."""

IMAGE_PYTHON = "/opt/miniconda3/envs/testbed/bin/python"
"""The interpreter of the images' `testbed` conda env, in which the tests run."""

RUNTIMES = ("docker", "podman")
"""Tried in this order when `envs.container_runtime` is not set."""

IMAGE_BUILD_VERSION = 1
"""Bumped when the extraction or run recipe changes (part of the fingerprint)."""

_REPORT_DIR = "/hrm"
_PLUGIN_SRC = Path(__file__).with_name("pytest_report_plugin.py")
_PLUGIN_MODULE = "hrm_pytest_report"
# An image reference as docker accepts it ([registry[:port]/]path[:tag][@digest]); it is
# dataset input placed on a command line, so nothing else (no spaces, no leading `-`).
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")


class ContainerRuntimeUnavailable(EnvironmentUnavailable):
    """No usable container runtime here; `reason` names each one tried and why it failed."""


def image_from_repo_id(repo_id: str) -> str:
    """SWE-smith's image name of a repo id: `swesmith/jd__tenacity.0d40e76f` ->
    `jyangballin/swesmith.x86_64.jd_1776_tenacity.0d40e76f`."""
    base = repo_id.removeprefix("swesmith/")
    owner, sep, rest = base.partition("__")
    if not sep or not owner or not rest or "/" in base:
        raise EnvironmentUnavailable(
            repo_id, "provider 'image': no image_name and no envs.repos image, and the repo "
            "id is not a SWE-smith id (`swesmith/{owner}__{repo}.{commit8}`) to derive one from")
    return f"{SWESMITH_IMAGE_PREFIX}{owner}_1776_{rest}".lower()


def resolve_image(repo_id: str, image_name: str, spec: EnvSpec) -> str:
    """The image to run: the instance's `image_name`, else `spec.image`, else derived."""
    image = (image_name or "").strip() or (spec.image or "").strip() or image_from_repo_id(repo_id)
    if not _IMAGE_REF.match(image):
        raise EnvironmentUnavailable(repo_id, f"provider 'image': {image!r} is not an image "
                                     "reference")
    return image


def _probe(runtime: str) -> str:
    """Empty when `runtime info` works; else why the runtime is not usable."""
    exe = shutil.which(runtime)
    if exe is None:
        return f"{runtime}: not found on PATH"
    try:
        proc = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{runtime}: `{runtime} info` failed: {err}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return f"{runtime}: `{runtime} info` exited {proc.returncode}: " + \
            (tail[-1][:300] if tail else "no output")
    return ""


@functools.cache
def _find_runtime(candidates: tuple[str, ...], path_env: str) -> tuple[str | None, str]:
    reasons = []
    for runtime in candidates:
        why = _probe(runtime)
        if not why:
            return shutil.which(runtime), ""
        reasons.append(why)
    return None, "; ".join(reasons)


def find_runtime(repo_id: str, preferred: str | None = None) -> str:
    """Path of a usable container runtime; raises ContainerRuntimeUnavailable naming each
    one tried and why it is unusable (probed once per process)."""
    candidates = (preferred,) if preferred else RUNTIMES
    exe, reasons = _find_runtime(candidates, os.environ.get("PATH", ""))
    if exe is None:
        raise ContainerRuntimeUnavailable(
            repo_id, f"provider 'image' needs a container runtime to run tests in the image, "
            f"and none is usable here ({reasons}). Set envs.container_runtime, run where "
            "docker or podman works, or use an 'sdist'/'git' provider for this repo.")
    return exe


def container_run_argv(runtime: str, image: str, *, tree: Path, report_dir: Path,
                       node_ids: list[str], limits: SandboxLimits, name: str,
                       workdir: str = IMAGE_WORKDIR, python: str = IMAGE_PYTHON) -> list[str]:
    """The exact command line of one test run in a fresh container (pure: no side effects).

    `tree` (the working copy) is mounted read-write at `workdir`, `report_dir` (the report
    plugin and its JSON lines) at /hrm; everything else is the image's read-only root
    filesystem plus a small /tmp tmpfs (HOME). No network, no capabilities, no privilege
    gain; memory, process count and file size capped as in the local sandbox; `timeout -k`
    inside the container ends pytest at the wall-clock limit.
    """
    if not node_ids:
        raise ValueError("run_tests needs at least one node id")
    bad = [n for n in node_ids if n.startswith("-")]
    if bad:
        raise ValueError(f"node ids must not start with '-': {bad[:3]}")
    if not _IMAGE_REF.match(image):
        raise ValueError(f"not an image reference: {image!r}")
    timeout = max(1, int(round(limits.timeout_s)))
    return [
        runtime, "run", "--rm", "--name", name,
        "--network", "none",
        "--read-only",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m",
        "--pids-limit", str(limits.max_processes),
        "--ulimit", f"fsize={limits.max_file_mb * 1024 * 1024}",
        "--ulimit", "core=0",
        "-v", f"{Path(tree).resolve()}:{workdir}:rw",
        "-v", f"{Path(report_dir).resolve()}:{_REPORT_DIR}:rw",
        "-w", workdir,
        "-e", "HOME=/tmp", "-e", "TMPDIR=/tmp",
        "-e", f"PYTHONPATH={workdir}:{_REPORT_DIR}",
        "-e", "PYTHONDONTWRITEBYTECODE=1", "-e", "PYTHONNOUSERSITE=1",
        "-e", "PYTHONHASHSEED=0",
        "--entrypoint", "timeout",
        image,
        "-k", "5", str(timeout),
        python, "-m", "pytest", "-p", _PLUGIN_MODULE,
        # `--opt=value` forms: a separate path argument would count towards pytest's rootdir
        # (the common ancestor of path arguments), and node ids would come out relative to it.
        f"--hrm-report={_REPORT_DIR}/report.jsonl", f"--rootdir={workdir}",
        "-p", "no:cacheprovider", "-q", "--tb=native",
        "--no-header", "-rN", *node_ids,
    ]


def extract_argvs(runtime: str, image: str, dest: Path, name: str,
                  workdir: str = IMAGE_WORKDIR) -> list[list[str]]:
    """Commands that copy the image's `workdir` to `dest` (create, cp, rm; pure)."""
    return [
        [runtime, "create", "--name", name, "--network", "none", image],
        [runtime, "cp", f"{name}:{workdir}/.", str(dest)],
        [runtime, "rm", "-f", name],
    ]


def image_fingerprint(image: str, runtime: str) -> str:
    blob = json.dumps({"image": image, "runtime": Path(runtime).name,
                       "build": IMAGE_BUILD_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _slug(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", image)


class ImageProvider:
    """`provider: image`: see the module docstring."""

    def get(self, repo_id: str, spec: EnvSpec, cfg: EnvsConfig, *, image_name: str = ""
            ) -> ImageEnvironment:
        image = resolve_image(repo_id, image_name, spec)
        runtime = find_runtime(repo_id, cfg.container_runtime)
        root = Path(cfg.cache_dir).resolve() / "images" / _slug(image)
        return ImageEnvironment(repo_id=repo_id, spec=spec, cfg=cfg, image=image,
                                runtime=runtime, root=root,
                                fingerprint=image_fingerprint(image, runtime))


@dataclass(frozen=True)
class ImageEnvironment:
    repo_id: str
    spec: EnvSpec
    cfg: EnvsConfig
    image: str
    runtime: str
    root: Path
    fingerprint: str

    @property
    def pristine(self) -> Path:
        """The tree copied out of the image (extracted on first use, then cached)."""
        tree = self.root / "tree"
        marker = self.root / "marker.json"
        if self._extracted(marker):
            return tree
        with build_lock(self.root.with_name(self.root.name + ".lock")):
            if not self._extracted(marker):  # another process may have extracted it meanwhile
                shutil.rmtree(self.root, ignore_errors=True)
                self.root.mkdir(parents=True)
                try:
                    tree.mkdir()
                    name = f"hrm-extract-{uuid.uuid4().hex[:12]}"
                    create, cp, rm = extract_argvs(self.runtime, self.image, tree, name)
                    run_checked(create, repo_id=self.repo_id, what=f"create {self.image}")
                    try:
                        run_checked(cp, repo_id=self.repo_id, what=f"copy {IMAGE_WORKDIR}")
                    finally:
                        subprocess.run(rm, capture_output=True)
                    if not (tree / ".git").exists():
                        commit_pristine(tree, self.repo_id)
                    marker.write_text(json.dumps({"image": self.image,
                                                  "fingerprint": self.fingerprint}) + "\n")
                except BaseException:
                    shutil.rmtree(self.root, ignore_errors=True)
                    raise
        return tree

    def _extracted(self, marker: Path) -> bool:
        try:
            return json.loads(marker.read_text())["fingerprint"] == self.fingerprint
        except (OSError, ValueError, KeyError):
            return False

    @contextmanager
    def working_copy(self, git: bool = True) -> Iterator[Path]:
        """A fresh host copy of the tree extracted from the image; deleted after."""
        with copy_of(self.pristine, git=git) as tree:
            yield tree

    def apply_patch(self, tree: Path, patch: str, reverse: bool = False) -> None:
        git_apply(tree, patch, reverse=reverse)

    def diff(self, tree: Path) -> str:
        return git_diff(tree)

    def run_tests(self, tree: Path, node_ids: list[str], timeout_s: float | None = None,
                  *, keep_writes: bool = False) -> TestRun:
        # The container mounts the tree read-write: its writes are always kept, and
        # envs.max_tree_mb does not apply (docs/envs.md, "Disk quota").
        limits = limits_from(self.cfg, timeout_s)
        home = Path(tempfile.mkdtemp(prefix="hrm-img-run-"))
        name = f"hrm-run-{uuid.uuid4().hex[:12]}"
        try:
            os.chmod(home, 0o777)  # the container's user must write the report
            shutil.copy2(_PLUGIN_SRC, home / f"{_PLUGIN_MODULE}.py")
            report = home / "report.jsonl"
            report.touch()
            os.chmod(report, 0o666)
            argv = container_run_argv(self.runtime, self.image, tree=tree, report_dir=home,
                                      node_ids=node_ids, limits=limits, name=name)
            started = time.monotonic()
            exit_code, output, truncated, killed = _run_capped(
                argv, limits.timeout_s + 60, limits.max_output_kb * 1024)
            duration = time.monotonic() - started
            if killed:
                subprocess.run([self.runtime, "rm", "-f", name], capture_output=True)
            timed_out = killed or exit_code == 124  # 124: `timeout` ended pytest
            if timed_out:
                reason = f"timeout after {limits.timeout_s:g} s"
            elif exit_code == 137:
                reason = "SIGKILL (the memory limit, or `timeout -k` after its grace period)"
            else:
                reason = ""
            # A file the container could write: its structure is checked, nothing signs it
            # (docs/envs.md: the container provider's limits).
            code = None if timed_out or exit_code == 137 else exit_code
            try:
                records, refused = verify_reports(report.read_bytes(), None, exit_code=code), ""
            except ReportRefused as exc:
                records, refused = [], str(exc)
            all_tests, collection_errors = aggregate(records)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        results = (refused_results(node_ids, refused) if refused
                   else select(all_tests, node_ids, timed_out=timed_out))
        return TestRun(
            results=results,
            exit_code=None if timed_out or exit_code == 137 else exit_code,
            timed_out=timed_out,
            output_truncated=truncated,
            output=output,
            duration_s=round(duration, 3),
            isolation=f"container:{Path(self.runtime).name}+net-none+ro-rootfs",
            all_tests=all_tests,
            collection_errors=collection_errors,
            killed_reason=reason,
            started=timed_out or bool(refused) or any(r.get("when") == "session" for r in records),
            refused=refused,
        )


def _run_capped(argv: list[str], timeout_s: float, cap: int) -> tuple[int | None, str, bool,
                                                                      bool]:
    """Run `argv`; (exit code, first `cap` bytes of output, truncated, killed on timeout)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    kept, total = bytearray(), 0

    def drain() -> None:
        nonlocal total
        assert proc.stdout is not None
        while chunk := proc.stdout.read(65536):
            total += len(chunk)
            room = cap - len(kept)
            if room > 0:
                kept.extend(chunk[:room])

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    killed = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        killed = True
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    return (None if killed else proc.returncode, kept.decode("utf-8", "replace"),
            total > cap, killed)
