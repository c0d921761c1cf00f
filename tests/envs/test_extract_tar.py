"""sdist extraction refuses what could land outside the tree, with or without the interpreter's
tar extraction filters (Python before 3.10.12 / 3.11.4 has none)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from hrm.envs.errors import EnvironmentUnavailable
from hrm.envs.providers import extract_tar


def _tar(path: Path, members: list[tuple[str, str | None, bytes]]) -> Path:
    """(name, symlink target or None, content) members written to a .tar.gz."""
    with tarfile.open(path, "w:gz") as tf:
        for name, link, data in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o6777
                tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(params=["filters", "no filters"])
def filters(request, monkeypatch):
    if request.param == "no filters":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tar extraction filters")
    return request.param


def test_a_plain_sdist_extracts_without_set_id_or_world_write(tmp_path, filters):
    archive = _tar(tmp_path / "ok.tar.gz", [("pkg-1.0/pkg/__init__.py", None, b"x = 1\n")])
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(archive) as tf:
        extract_tar(tf, str(out), "r/pkg")
    target = out / "pkg-1.0" / "pkg" / "__init__.py"
    assert target.read_text() == "x = 1\n"
    assert target.stat().st_mode & 0o7022 == 0


@pytest.mark.parametrize("members", [
    [("pkg-1.0/../../evil.py", None, b"owned")],
    [("/tmp/hrm-evil-absolute.py", None, b"owned")],
    [("pkg-1.0/link", "/etc/passwd", b"")],
], ids=["dotdot", "absolute", "symlink-out"])
def test_members_that_leave_the_tree_are_refused(tmp_path, filters, members):
    archive = _tar(tmp_path / "bad.tar.gz", members)
    out = tmp_path / "out"
    out.mkdir()
    refusals = (EnvironmentUnavailable, getattr(tarfile, "FilterError", EnvironmentUnavailable))
    try:
        with tarfile.open(archive) as tf:
            extract_tar(tf, str(out), "r/pkg")
        refused = False
    except refusals:
        refused = True
    # nothing outside the tree: refused, or (the `data` filter, for an absolute name) kept inside
    assert not (tmp_path / "evil.py").exists() and not Path("/tmp/hrm-evil-absolute.py").exists()
    assert not (out / "pkg-1.0" / "link").is_symlink()
    assert refused or (filters == "filters" and (out / "tmp" / "hrm-evil-absolute.py").exists())
