"""Providers: how the pristine working tree of an environment is obtained.

- `sdist`: `pip download` the pinned sdist from PyPI, unpack it (top directory stripped),
  `git init` and commit it, so SWE-smith patches can be `git apply`-ed and `git diff` works.
- `git`: clone a local repository (path or URL) and check out `git_commit`.
- `image`: a container image; it runs only on Kubernetes (see docs/envs.md), never here.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

from hrm.config import EnvSpec
from hrm.envs.errors import EnvironmentUnavailable

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


def _unpack(archive: Path, dest: Path, repo_id: str) -> None:
    """Unpack an sdist into `dest`, stripping its single top-level directory."""
    with tempfile.TemporaryDirectory() as tmp:
        if archive.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")  # 'data' refuses links/paths escaping tmp
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


def image_unavailable(spec: EnvSpec, repo_id: str) -> EnvironmentUnavailable:
    return EnvironmentUnavailable(
        repo_id,
        f"provider 'image' ({spec.image}) runs tests inside that container on Kubernetes "
        "(the KFP evaluate task); there is no container runtime in a local run. Use an "
        "'sdist' or 'git' provider for local evaluation.",
    )
