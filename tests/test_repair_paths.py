"""`hrm repair` names a user's file as the model was trained to read paths (from the root of its
repository) and never writes an absolute path into a diff header."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hrm.repair import repository_path


def test_a_file_in_a_git_work_tree_is_named_from_the_tree_root(tmp_path: Path, monkeypatch):
    repo = tmp_path / "project"
    (repo / "pkg").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    module = repo / "pkg" / "mod.py"
    module.write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)  # the working directory is outside the repository
    assert repository_path(module) == ("pkg/mod.py", repo.resolve())
    monkeypatch.chdir(repo / "pkg")  # and a relative path from inside it
    assert repository_path(Path("mod.py")) == ("pkg/mod.py", repo.resolve())


def test_outside_git_the_name_is_relative_to_the_working_directory(tmp_path: Path, monkeypatch):
    (tmp_path / "src").mkdir()
    module = tmp_path / "src" / "m.py"
    module.write_text("")
    monkeypatch.chdir(tmp_path)
    assert repository_path(module) == ("src/m.py", tmp_path.resolve())


def test_a_file_elsewhere_goes_by_its_name_in_its_own_directory(tmp_path: Path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    (tmp_path / "far").mkdir()
    module = tmp_path / "far" / "m.py"
    module.write_text("")
    monkeypatch.chdir(tmp_path / "cwd")
    name, base = repository_path(module)
    assert (name, base) == ("m.py", (tmp_path / "far").resolve())
    assert not name.startswith("/")
