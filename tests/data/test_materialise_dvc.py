"""`materialise` and a real DVC round trip (git + dvc CLI, a local-directory remote)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hrm.config import Params
from hrm.data.materialise import dvc_executable, materialise


def _run(*cmd: str, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"


def test_materialise_pull_dvc_add_push_and_restore(sample_path, tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    dvc = dvc_executable()
    _run("git", "init", "-q", cwd=repo)
    _run(dvc, "init", "-q", cwd=repo)
    params = Params()

    # No data, no data.dvc: materialise pulls from the source and `dvc add`s data/.
    first = materialise(params, source=str(sample_path), root=repo)
    assert (first.action, first.tracked) == ("pull", True)
    snapshot = repo / "data" / "instances.jsonl"
    original = snapshot.read_bytes()
    assert len(original.splitlines()) == 57 and (repo / "data.dvc").exists()

    # Present: nothing to do.
    assert materialise(params, source=str(sample_path), root=repo).action == "present"

    # Push to a local-directory remote, lose data and cache, restore with dvc pull.
    remote = tmp_path / "remote"
    remote.mkdir()
    _run(dvc, "remote", "add", "-d", "local", str(remote), cwd=repo)
    _run(dvc, "push", "-q", cwd=repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    restored = materialise(params, source="/nonexistent/never/read", root=repo)
    assert restored.action == "dvc-pull"
    assert snapshot.read_bytes() == original
