"""A built repository environment: pristine tree + venv, cached per repo id; sandboxed tests.

Cache layout (`envs.cache_dir`):
    <slug>/tree/         pristine working tree, a git repository whose HEAD is the repo state
    <slug>/venv/         venv with the test requirements (the package itself is NOT installed:
                         tests import it from the tree copy via cwd/PYTHONPATH)
    <slug>/marker.json   written last; holds the spec fingerprint. No marker or another
                         fingerprint means a half-built or stale cache: it is rebuilt.
    <slug>.lock          flock held while building, so two processes never build at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hrm.config import EnvsConfig, EnvSpec
from hrm.envs.errors import EnvironmentUnavailable
from hrm.envs.providers import (
    Environment,
    build_lock,
    copy_of,
    fetch_git,
    fetch_sdist,
    git_apply,
    git_diff,
    run_checked,
)
from hrm.envs.report_channel import ReportChannel, shadowing_modules
from hrm.envs.results import ReportRefused, TestRun, aggregate, refused_results, select
from hrm.envs.sandbox import limits_from, run_sandboxed, sandbox_identity

log = logging.getLogger(__name__)

BUILD_VERSION = 1
"""Bumped when the cache layout or build recipe changes (part of the fingerprint)."""

_PLUGIN_SRC = Path(__file__).with_name("pytest_report_plugin.py")
_PLUGIN_MODULE = "hrm_pytest_report"


def slug(repo_id: str) -> str:
    """Directory name of a repo id (`swesmith/jd__tenacity.0d40e76f` -> `swesmith__jd__...`)."""
    return repo_id.replace("/", "__").replace(":", "_")


def refused_run(node_ids: list[str], why: str) -> TestRun:
    """A run that was never started because its outcome could have been forged."""
    return TestRun(
        results=refused_results(node_ids, why),
        exit_code=None, timed_out=False, output_truncated=False, output="", duration_s=0.0,
        isolation="not run", refused=why)


def _reachable_by_others(path: Path) -> bool:
    """True if every directory on the way is world-searchable and the file world-executable."""
    path = path.resolve()
    if not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)


def base_python(cfg: EnvsConfig, repo_id: str) -> Path:
    """Interpreter the venv is created from; it must be runnable by the sandbox user."""
    if cfg.python:
        chosen = Path(cfg.python)
        if not chosen.exists():
            raise EnvironmentUnavailable(repo_id, f"envs.python {cfg.python} does not exist")
    else:
        chosen = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if sandbox_identity(limits_from(cfg)) is None or _reachable_by_others(chosen):
        return chosen
    fallback = Path("/usr/bin/python3")
    if not cfg.python and fallback.exists() and _reachable_by_others(fallback):
        return fallback
    raise EnvironmentUnavailable(
        repo_id,
        f"interpreter {chosen} is not reachable by sandbox user {cfg.sandbox_user!r}; set "
        "envs.python to a world-readable interpreter or envs.sandbox_user to null",
    )


def fingerprint(spec: EnvSpec, python: Path) -> str:
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True).stdout.strip()
    blob = json.dumps({"spec": spec.model_dump(mode="json"), "python": str(python),
                       "version": version, "build": BUILD_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _marker_ok(root: Path, fp: str) -> bool:
    marker = root / "marker.json"
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text())["fingerprint"] == fp
    except (ValueError, KeyError):
        return False


def _build(repo_id: str, spec: EnvSpec, python: Path, root: Path, fp: str) -> None:
    """Build venv + pristine tree into `root`; the marker is written only on success."""
    started = time.monotonic()
    if root.exists():
        log.info("rebuilding %s (half-built or stale cache at %s)", repo_id, root)
        shutil.rmtree(root)
    root.mkdir(parents=True)
    venv = root / "venv"
    run_checked([str(python), "-m", "venv", str(venv)], repo_id=repo_id, what="venv")
    vpy = venv / "bin" / "python"
    if spec.test_requirements:
        run_checked([str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     *spec.test_requirements], repo_id=repo_id,
                    what=f"pip install {spec.test_requirements}")
    tree = root / "tree"
    if spec.provider == "sdist":
        fetch_sdist(spec, vpy, tree, repo_id)
    elif spec.provider == "git":
        fetch_git(spec, tree, repo_id)
    for rel in spec.source_dirs + spec.test_dirs:
        if not (tree / rel).is_dir():
            raise EnvironmentUnavailable(repo_id, f"'{rel}' (source_dirs/test_dirs) is not a "
                                         f"directory of the {spec.provider} tree")
    marker = {"repo_id": repo_id, "fingerprint": fp, "python": str(python),
              "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "build_seconds": round(time.monotonic() - started, 1)}
    (root / "marker.json").write_text(json.dumps(marker, indent=2) + "\n")


def get_environment(repo_id: str, cfg: EnvsConfig, *, image_name: str = "") -> Environment:
    """Return the environment of `repo_id` from its provider, built and cached on first use.

    `sdist`/`git` give a `RepoEnvironment` (local venv + sandbox); `image` gives an
    `hrm.envs.image.ImageEnvironment` for the instance's `image_name` (pass it when you have
    the instance; without it the image is `envs.repos[id].image`, else SWE-smith's name
    derived from the repo id). Raises EnvironmentUnavailable (with a reason) when the repo id
    has no spec, its provider cannot run here (`image` without a usable container runtime),
    or the build fails.
    """
    spec = cfg.repos.get(repo_id)
    if spec is None:
        raise EnvironmentUnavailable(
            repo_id, f"no entry in envs.repos (known: {sorted(cfg.repos) or 'none'})")
    return provider_for(spec).get(repo_id, spec, cfg, image_name=image_name)


def provider_for(spec: EnvSpec):
    """The `Provider` implementing `spec.provider`."""
    if spec.provider == "image":
        from hrm.envs.image import ImageProvider

        return ImageProvider()
    return LocalProvider()


class LocalProvider:
    """`sdist` and `git`: a pristine tree and a venv built here, tests in the local sandbox."""

    def get(self, repo_id: str, spec: EnvSpec, cfg: EnvsConfig, *, image_name: str = ""
            ) -> RepoEnvironment:
        python = base_python(cfg, repo_id)
        fp = fingerprint(spec, python)
        cache = Path(cfg.cache_dir).resolve()
        root = cache / slug(repo_id)
        if not _marker_ok(root, fp):
            with build_lock(cache / f"{slug(repo_id)}.lock"):
                if not _marker_ok(root, fp):  # another process may have built it meanwhile
                    try:
                        _build(repo_id, spec, python, root, fp)
                    except BaseException:
                        shutil.rmtree(root, ignore_errors=True)
                        raise
        if sandbox_identity(limits_from(cfg)) is not None and not _reachable_by_others(root):
            raise EnvironmentUnavailable(
                repo_id, f"cache {root} is not reachable by sandbox user {cfg.sandbox_user!r} "
                "(a parent directory is not world-searchable): move envs.cache_dir")
        return RepoEnvironment(repo_id=repo_id, spec=spec, cfg=cfg, root=root, fingerprint=fp)


@dataclass(frozen=True)
class RepoEnvironment:
    repo_id: str
    spec: EnvSpec
    cfg: EnvsConfig
    root: Path
    fingerprint: str

    @property
    def pristine(self) -> Path:
        """The cached pristine tree: read it, never write it (use `working_copy`)."""
        return self.root / "tree"

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @contextmanager
    def working_copy(self, git: bool = True) -> Iterator[Path]:
        """Yield a fresh temporary copy of the pristine tree; deleted after.

        `git=True`: a git repository like the pristine (`diff` needs one). `git=False`: the
        files only, without `.git` (more than half of the tree's files and directories), for
        callers that only apply a patch and run tests (`apply_patch` works on either). Either
        way every file is a copy: nothing in the working copy shares an inode with the pristine,
        so whatever runs in it cannot reach the cache.
        """
        with copy_of(self.pristine, git=git) as tree:
            yield tree

    def apply_patch(self, tree: Path, patch: str, reverse: bool = False) -> None:
        """`git apply` a unified diff to `tree`; raises PatchError with git's message.

        A tree without `.git` is patched as plain files: repository discovery stops at the
        tree (GIT_CEILING_DIRECTORIES), so a repository around the temporary directory is
        never used instead.
        """
        git_apply(tree, patch, reverse=reverse)

    def diff(self, tree: Path) -> str:
        """`git diff` of the tree against the pristine HEAD (tracked files)."""
        return git_diff(tree)

    def run_tests(self, tree: Path, node_ids: list[str], timeout_s: float | None = None,
                  *, keep_writes: bool = False) -> TestRun:
        """Run pytest on `node_ids` in `tree` inside the sandbox; per-test outcomes.

        The package is imported from `tree` (cwd and PYTHONPATH), never from the venv.
        A node id pytest cannot find (exit 4) is `missing`, i.e. failing. What the run writes
        in the tree and HOME stays under `envs.max_tree_mb` and is gone afterwards (the tree is
        left as it was); `keep_writes` (the generator's baseline, which reads back the call
        record the unpatched suite writes) lets the writes land in the tree, without a quota.
        """
        if not node_ids:
            raise ValueError("run_tests needs at least one node id")
        bad = [n for n in node_ids if n.startswith("-")]
        if bad:
            raise ValueError(f"node ids must not start with '-': {bad[:3]}")
        tree = Path(tree).resolve()
        shadows = shadowing_modules(tree)
        if shadows:
            return refused_run(node_ids, f"the tree defines {shadows}, which Python or pytest "
                               "would import from it before the report plugin")
        home = Path(tempfile.mkdtemp(prefix="hrm-run-"))
        try:
            plugins = home / "plugins"
            plugins.mkdir()
            shutil.copy2(_PLUGIN_SRC, plugins / f"{_PLUGIN_MODULE}.py")
            with ReportChannel() as channel:
                # --tb=native: the same failure messages as pytest's long tracebacks for less
                # CPU where tests fail (1.1-2.2x less a run of a generated bug, 3x with 34
                # failures: docs/envs.md "API"), frames still printed (`limit_notes` reads them).
                argv = [str(self.python), "-m", "pytest", "-p", _PLUGIN_MODULE,
                        *channel.plugin_args, "-p", "no:cacheprovider", "-q", "--tb=native",
                        "--no-header", "-rN", *node_ids]
                limits = limits_from(self.cfg, timeout_s)
                if keep_writes:
                    limits = dataclasses.replace(limits, max_tree_mb=None)
                res = run_sandboxed(
                    argv, cwd=tree, home=home, limits=limits,
                    path_dirs=[str(self.python.parent)],
                    # The plugin before the tree: a module of the tree never replaces it.
                    python_env={"PYTHONPATH": os.pathsep.join([str(plugins), str(tree)]),
                                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                                "PYTHONHASHSEED": "0"},
                    readonly=[self.root], hide=[Path.cwd()], pass_fds=channel.pass_fds,
                )
                killed = res.timed_out or res.exit_code is None
                try:
                    records, refused = channel.records(None if killed else res.exit_code), ""
                except ReportRefused as exc:
                    records, refused = [], str(exc)
            all_tests, collection_errors = aggregate(records)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        results = (refused_results(node_ids, refused) if refused
                   else select(all_tests, node_ids, timed_out=res.timed_out))
        return TestRun(
            results=results,
            exit_code=res.exit_code,
            timed_out=res.timed_out,
            output_truncated=res.output_truncated,
            output=res.output,
            duration_s=res.duration_s,
            isolation=res.isolation,
            all_tests=all_tests,
            collection_errors=collection_errors,
            killed_reason=res.killed_reason if (res.timed_out or res.signal_name) else "",
            started=res.timed_out or bool(refused) or any(
                r.get("when") == "session" for r in records),
            refused=refused,
        )
