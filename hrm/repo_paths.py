"""The name a user's file goes by in `hrm repair`: the model's row (`# file: ...`) and the diff.

The model was trained on repository paths (`tenacity/wait.py`), and a diff applies from the
directory its paths are relative to, so a file is named from the root of the git work tree
holding it; outside git, from the working directory when the file is under it; else by its bare
name in its own directory. Never an absolute path (`a//tmp/...` headers).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hrm.errors import InputError

GIT_TIMEOUT_S = 30


def _work_tree_root(directory: Path) -> Path | None:
    """The root of the git work tree holding `directory`; None outside one or without git."""
    # git's messages in English whatever the user's locale: one of them is matched below
    env = {k: v for k, v in os.environ.items() if k != "LANGUAGE"} | {"LC_ALL": "C"}
    try:
        proc = subprocess.run(["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S, env=env)
    except FileNotFoundError:  # no git installed: no work tree can be found
        return None
    except subprocess.TimeoutExpired:
        raise InputError(f"`git rev-parse` did not answer in {GIT_TIMEOUT_S} s",
                         path=str(directory)) from None
    if proc.returncode == 0 and proc.stdout.strip():
        return Path(proc.stdout.strip()).resolve()
    if "not a git repository" in proc.stderr:
        return None
    # e.g. "detected dubious ownership": a work tree git will not read; say so, do not guess
    raise InputError(f"git cannot read the work tree here: {proc.stderr.strip()}", path=str(directory))


def repository_path(path: Path) -> tuple[str, Path]:
    """(name of `path` in the row and the diff, the directory the diff applies from)."""
    path = path.resolve()
    root = _work_tree_root(path.parent)
    for base in [root, Path.cwd().resolve()]:
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix(), base
    return path.name, path.parent
