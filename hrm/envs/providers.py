"""Providers: how an environment (a pristine tree plus somewhere its tests run) is obtained.

Every provider returns an object satisfying `Environment` (below); callers code against that
protocol only. `hrm.envs.get_environment` picks the provider named by `envs.repos[id].provider`.

- `sdist` (`hrm.envs.environment.LocalProvider`): `pip download` the pinned sdist from PyPI,
  unpack it (top directory stripped), `git init` and commit it, so SWE-smith patches can be
  `git apply`-ed and `git diff` works; tests run in a cached venv through the local sandbox.
- `git` (same provider): clone a local repository (path or URL), check out `git_commit`.
- `image` (`hrm.envs.image.ImageProvider`): the instance's SWE-smith container image
  (`image_name`); the tree is copied out of the image and tests run in a fresh container
  through a container runtime (`docker`/`podman`). Where none is usable it raises
  EnvironmentUnavailable naming what is missing (see docs/envs.md).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hrm.config import EnvsConfig, EnvSpec
from hrm.envs.errors import EnvironmentUnavailable, PatchError

if TYPE_CHECKING:
    from hrm.envs.results import TestRun


@runtime_checkable
class Environment(Protocol):
    """What every provider's environment offers (`RepoEnvironment`, `ImageEnvironment`)."""

    repo_id: str
    fingerprint: str
    """Identifies what the tests run against (spec + interpreter, or the image reference)."""

    def working_copy(self, git: bool = True) -> AbstractContextManager[Path]:
        """A fresh temporary copy of the pristine tree on the host, deleted afterwards."""
        ...

    def apply_patch(self, tree: Path, patch: str, reverse: bool = False) -> None:
        """`git apply` (or `-R`) a unified diff to a working copy; PatchError if refused."""
        ...

    def diff(self, tree: Path) -> str:
        """`git diff` of a `git=True` working copy against the pristine tree."""
        ...

    def run_tests(self, tree: Path, node_ids: list[str], timeout_s: float | None = None,
                  *, keep_writes: bool = False) -> TestRun:
        """Run pytest node ids on a working copy, confined; structured per-test outcomes.
        `keep_writes`: what the run writes in the tree stays there (else it may be discarded,
        under a quota: `envs.max_tree_mb`)."""
        ...


class Provider(Protocol):
    """Builds (or reuses) the environment of one repo id; one instance per provider kind."""

    def get(self, repo_id: str, spec: EnvSpec, cfg: EnvsConfig, *, image_name: str = ""
            ) -> Environment:
        """The environment of `repo_id`; raises EnvironmentUnavailable with the reason.

        `image_name`: the instance's SWE-smith `image_name` (used by the `image` provider
        only; the local providers ignore it).
        """
        ...

GIT_IDENTITY = ["-c", "user.name=hrm", "-c", "user.email=hrm@localhost",
                "-c", "commit.gpgsign=false", "-c", "safe.directory=*"]


def run_checked(cmd: list[str], *, repo_id: str, what: str, cwd: Path | None = None,
                timeout: float = 900) -> str:
    """Run a build command; failure raises EnvironmentUnavailable with its output tail."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EnvironmentUnavailable(repo_id, f"{what} failed: {err}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise EnvironmentUnavailable(repo_id, f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def commit_pristine(tree: Path, repo_id: str) -> None:
    """Make `tree` a git repository whose HEAD is the pristine state."""
    run_checked(["git", "init", "-q", str(tree)], repo_id=repo_id, what="git init")
    run_checked(["git", *GIT_IDENTITY, "add", "-A", "-f", "."], cwd=tree, repo_id=repo_id,
                what="git add")
    run_checked(["git", *GIT_IDENTITY, "commit", "-q", "--no-verify", "-m", "pristine"],
                cwd=tree, repo_id=repo_id, what="git commit")


def extract_tar(tf: tarfile.TarFile, dest: str, repo_id: str) -> None:
    """Extract an sdist's tar into `dest`, refusing what could land outside it: the `data`
    filter where this Python has extraction filters (3.10.12+, 3.11.4+, 3.12), else the same
    refusals by hand: absolute or `..` names, links, devices and other special members (an
    sdist holds only files and directories), and no set-id or group/other-write bits."""
    if hasattr(tarfile, "data_filter"):
        tf.extractall(dest, filter="data")
        return
    members = tf.getmembers()
    for m in members:
        parts = Path(m.name).parts
        if Path(m.name).is_absolute() or ".." in parts:
            raise EnvironmentUnavailable(repo_id, f"sdist member {m.name!r} leaves the tree")
        if not (m.isfile() or m.isdir()):
            raise EnvironmentUnavailable(
                repo_id, f"sdist member {m.name!r} is a link or special file (refused)")
        m.mode &= 0o755
    tf.extractall(dest, members=members)


def _unpack(archive: Path, dest: Path, repo_id: str) -> None:
    """Unpack an sdist into `dest`, stripping its single top-level directory."""
    with tempfile.TemporaryDirectory() as tmp:
        if archive.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
            with tarfile.open(archive) as tf:
                extract_tar(tf, tmp, repo_id)
        elif archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            raise EnvironmentUnavailable(repo_id, f"unknown sdist archive type: {archive.name}")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise EnvironmentUnavailable(
                repo_id, f"{archive.name}: expected one top-level directory, got {len(tops)}")
        tops[0].rename(dest)


def fetch_sdist(spec: EnvSpec, python: Path, tree: Path, repo_id: str) -> None:
    """Download the pinned sdist with pip and unpack it as `tree`."""
    assert spec.package is not None
    with tempfile.TemporaryDirectory() as dl:
        run_checked([str(python), "-m", "pip", "download", "-q", "--no-deps",
                     "--no-binary", ":all:", spec.package, "-d", dl],
                    repo_id=repo_id, what=f"pip download {spec.package}")
        archives = sorted(Path(dl).iterdir())
        if len(archives) != 1:
            raise EnvironmentUnavailable(
                repo_id, f"pip download {spec.package}: expected one sdist, got "
                f"{[a.name for a in archives]}")
        _unpack(archives[0], tree, repo_id)
    commit_pristine(tree, repo_id)


def fetch_git(spec: EnvSpec, tree: Path, repo_id: str) -> None:
    """Clone the local repository and check out the pinned commit (detached)."""
    assert spec.git_url is not None
    run_checked(["git", *GIT_IDENTITY, "clone", "-q", "--no-checkout", spec.git_url,
                 str(tree)], repo_id=repo_id, what=f"git clone {spec.git_url}")
    ref = spec.git_commit or "HEAD"
    run_checked(["git", *GIT_IDENTITY, "checkout", "-q", "--detach", ref], cwd=tree,
                repo_id=repo_id, what=f"git checkout {ref}")


@contextmanager
def copy_of(pristine: Path, git: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary copy of `pristine` (without `.git` unless `git`); deleted after.

    Every file is a copy: nothing shares an inode with the pristine tree, so whatever runs in
    the copy cannot reach the cache.
    """
    tmp = Path(tempfile.mkdtemp(prefix="hrm-wc-"))
    os.chmod(tmp, 0o755)  # the sandbox user must reach the tree inside
    try:
        tree = tmp / "tree"
        ignore = None if git else shutil.ignore_patterns(".git")
        shutil.copytree(pristine, tree, symlinks=True, ignore=ignore)
        yield tree
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def git_apply(tree: Path, patch: str, reverse: bool = False) -> None:
    """`git apply` a unified diff to `tree`; raises PatchError with git's message.

    A tree without `.git` is patched as plain files: repository discovery stops at the tree
    (GIT_CEILING_DIRECTORIES), so a repository around the temporary directory is never used.
    """
    cmd = ["git", *GIT_IDENTITY, "apply", "--whitespace=nowarn"]
    if reverse:
        cmd.append("-R")
    env = None
    if not (Path(tree) / ".git").exists():
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(Path(tree).resolve().parent)}
        env.pop("GIT_DIR", None)
        env.pop("GIT_WORK_TREE", None)
    proc = subprocess.run(cmd, cwd=tree, input=patch, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise PatchError(proc.stderr or proc.stdout or f"git apply exit {proc.returncode}",
                         reverse=reverse)


def git_diff(tree: Path) -> str:
    """`git diff` of a working copy against its pristine HEAD (tracked files)."""
    proc = subprocess.run(["git", *GIT_IDENTITY, "diff", "--no-color", "--no-ext-diff"],
                          cwd=tree, capture_output=True, text=True, check=True)
    return proc.stdout


@contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` while building or extracting one cached environment:
    two processes never build the same one at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
