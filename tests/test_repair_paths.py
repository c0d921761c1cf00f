"""`hrm repair` names a user's file as the model was trained to read paths (from the root of its
repository) and never writes an absolute path into a diff header."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hrm.repo_paths import repository_path


@pytest.fixture(autouse=True)
def _no_enclosing_work_tree(tmp_path: Path, monkeypatch):
    """Git looks no higher than tmp_path: a work tree above it must not change the answers; and
    it speaks German (LANGUAGE=de): its messages must be read in English whatever the locale."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("LANGUAGE", "de")


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


def test_a_work_tree_git_refuses_to_read_is_an_error_not_a_guess(tmp_path: Path, monkeypatch):
    from hrm.errors import InputError

    repo = tmp_path / "project"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    module = repo / "m.py"
    module.write_text("")
    # another user's repository: git refuses it ("detected dubious ownership")
    owner = subprocess.run(["chown", "-R", "nobody", str(repo)], capture_output=True, text=True)
    if owner.returncode != 0:
        pytest.skip(f"cannot give the repository to another user here: {owner.stderr.strip()}")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))  # no safe.directory
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="git cannot read the work tree here.*dubious ownership"):
        repository_path(module)
