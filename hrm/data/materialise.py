"""`hrm data materialise`: make sure `data/instances.jsonl` exists, the cheapest way first.

Order: an existing snapshot is kept as it is; else `dvc pull data.dvc` when `data.dvc` exists and
a DVC remote is configured; else the data is produced from the source (`synth:NAME` runs the
offline generator `hrm.synth.synthesize`, anything else `hrm.data.pull.pull`) and, inside a DVC
repository, `dvc add data` makes `data.dvc` track it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hrm.config import Params
from hrm.errors import HrmError

SYNTH_PREFIX = "synth:"


@dataclass(frozen=True)
class MaterialiseResult:
    snapshot: str
    action: str
    """`present`, `dvc-pull`, `synth` or `pull`."""
    tracked: bool
    """True when `dvc add` ran (data.dvc now tracks the data directory)."""
    message: str


def dvc_executable() -> str:
    """The `dvc` next to this interpreter (the project venv), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    if local.exists():
        return str(local)
    found = shutil.which("dvc")
    if not found:
        raise HrmError("dvc not found: install the project (`pip install -e .`) or DVC")
    return found


def _dvc(*args: str, cwd: Path) -> str:
    cmd = [dvc_executable(), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HrmError(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _has_remote(root: Path) -> bool:
    return bool(_dvc("remote", "list", cwd=root).strip())


def obtain(params: Params, source: str, out_path: Path) -> tuple[str, str]:
    """Write the snapshot for `source` to `out_path`: generate it (`synth:`) or pull it.

    Returns (action, message). Shared by `materialise` (DVC) and the KFP ingest component.
    """
    from hrm.data.pull import pull

    if source.startswith(SYNTH_PREFIX):
        from hrm.synth import synthesize

        synthesize(params, out_path)
        return "synth", f"generated {out_path} from {source}"
    summary = pull(source, out_path, params.data)
    return "pull", f"pulled {summary.rows} rows from {source} into {out_path}"


def materialise(params: Params, source: str | None = None, root: str | Path = ".") -> MaterialiseResult:
    """Ensure the snapshot `params.data.snapshot` (relative to `root`) exists; see the module doc."""
    root = Path(root)
    snapshot = root / params.data.snapshot
    if snapshot.exists():
        return MaterialiseResult(str(snapshot), "present", False, f"{snapshot} already exists: nothing to do")
    in_dvc_repo = (root / ".dvc").is_dir()
    pointer = root / (Path(params.data.snapshot).parts[0] + ".dvc")
    if in_dvc_repo and pointer.exists() and _has_remote(root):
        _dvc("pull", pointer.name, cwd=root)
        if not snapshot.exists():
            raise HrmError(f"`dvc pull {pointer.name}` ran but {snapshot} is still missing")
        return MaterialiseResult(str(snapshot), "dvc-pull", False, f"restored {snapshot} with dvc pull")

    action, message = obtain(params, source or params.data.source, snapshot)
    tracked = False
    if in_dvc_repo:
        data_dir = Path(params.data.snapshot).parts[0]
        _dvc("add", data_dir, cwd=root)
        tracked = True
        message += f"; `dvc add {data_dir}` tracks it in {data_dir}.dvc"
    return MaterialiseResult(str(snapshot), action, tracked, message)
