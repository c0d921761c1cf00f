"""`materialise` and a real DVC round trip (git + dvc CLI, a local-directory remote)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hrm.config import load_params
from hrm.data.materialise import dvc_executable, materialise


def _run(*cmd: str, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"


def test_materialise_pull_dvc_add_push_and_restore(sample_path, sample_lines, repo_root,
                                                    tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    dvc = dvc_executable()
    _run("git", "init", "-q", cwd=repo)
    _run(dvc, "init", "-q", cwd=repo)
    params = load_params(repo_root / "params.yaml", "tiny")
    params.data.source = "/nonexistent/never/read"  # only an explicit source may be read

    # No data, no data.dvc: materialise pulls from the source and `dvc add`s data/.
    first = materialise(params, source=str(sample_path), root=repo)
    assert (first.action, first.tracked) == ("pull", True)
    snapshot = repo / "data" / "instances.jsonl"
    original = snapshot.read_bytes()
    assert len(original.splitlines()) == 57 and (repo / "data.dvc").exists()

    # Present and no source given: nothing to do.
    assert materialise(params, root=repo).action == "present"
    # Present but a source given: that source replaces the snapshot, and says so.
    subset = tmp_path / "subset.jsonl"
    subset.write_bytes(b"\n".join(sample_lines[:5]) + b"\n")
    replaced = materialise(params, source=str(subset), root=repo)
    assert (replaced.action, replaced.replaced, replaced.tracked) == ("pull", True, True)
    assert "replaced the existing snapshot" in replaced.message
    assert len(snapshot.read_bytes().splitlines()) == 5
    assert not list((repo / "data").glob("*.partial*"))
    materialise(params, source=str(sample_path), root=repo)
    assert snapshot.read_bytes() == original

    # Push to a local-directory remote, lose data and cache, restore with dvc pull.
    remote = tmp_path / "remote"
    remote.mkdir()
    _run(dvc, "remote", "add", "-d", "local", str(remote), cwd=repo)
    _run(dvc, "push", "-q", cwd=repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    restored = materialise(params, root=repo)
    assert restored.action == "dvc-pull"
    assert snapshot.read_bytes() == original

    # A remote exists, but an explicit source still wins over `dvc pull`.
    shutil.rmtree(repo / "data")
    explicit = materialise(params, source=str(subset), root=repo)
    assert (explicit.action, explicit.replaced) == ("pull", False)
    assert len(snapshot.read_bytes().splitlines()) == 5
