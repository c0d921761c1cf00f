"""Fixtures of the envs tests: the real tenacity environment, built once per session into the
default cache (`.cache/hrm-envs` under the repo root) so other test areas reuse it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

TENACITY = "swesmith/jd__tenacity.0d40e76f"




def hash_tree(root: Path) -> str:
    """Content hash of every file (and symlink target) under root, paths included."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            digest.update(str(path.relative_to(root)).encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            else:
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def tree_hash():
    return hash_tree
