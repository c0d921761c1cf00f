"""`hrm repair`'s own inputs and output file: the source file, `--issue` (text or a file), and
`--apply` writing through a symlink with the file's mode kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hrm.cli.predict import _issue_text, _read_text, _write_in_place
from hrm.errors import InputError


def test_the_source_file_errors_name_what_is_wrong(tmp_path: Path):
    with pytest.raises(InputError, match="is a directory, not a file"):
        _read_text(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        _read_text(tmp_path / "missing.py")
    latin = tmp_path / "latin.py"
    latin.write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text") as err:
        _read_text(latin)
    assert err.value.path == str(latin)


def test_issue_is_text_or_an_existing_file_never_a_mistyped_file_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _issue_text(None) == "" and _issue_text("") == ""
    assert _issue_text("returns None for empty input") == "returns None for empty input"
    assert _issue_text("crash") == "crash"  # one word, but no file name
    Path("issue.txt").write_text("the retry never stops\n", encoding="utf-8")
    assert _issue_text("issue.txt") == "the retry never stops\n"
    for typo in ("isue.txt", "notes/issue.md", "ISSUE.RST"):
        with pytest.raises(InputError, match="names a file that does not exist") as err:
            _issue_text(typo)
        assert err.value.path == typo
    os.mkdir("issues")
    with pytest.raises(InputError, match="is a directory"):
        _issue_text("issues")
    Path("bad.txt").write_bytes(b"\xff\xfe broken")
    with pytest.raises(InputError, match="not UTF-8 text"):
        _issue_text("bad.txt")


def test_apply_writes_through_a_symlink_and_keeps_the_mode(tmp_path: Path):
    target = tmp_path / "tool.py"
    target.write_text("x = 1\n")
    target.chmod(0o755)
    link = tmp_path / "link.py"
    link.symlink_to(target)
    _write_in_place(link, "x = 2\n")
    assert link.is_symlink() and target.read_text() == "x = 2\n"
    assert (target.stat().st_mode & 0o777) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.py", "tool.py"]  # no temp file left
