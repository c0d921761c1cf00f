"""`hrm data materialise`: make sure `data/instances.jsonl` exists.

Without an explicit source, the cheapest way first: an existing snapshot is kept as it is; else
`dvc pull data.dvc` when `data.dvc` exists and a DVC remote is configured; else the data is
produced from `data.source`. With an explicit source (`hrm data materialise --source X`,
`make run DATA=X`) the data is always produced from X, replacing any snapshot (the message says
so): asking for a source and silently getting other data would be worse than the cost.

Producing: `synth:` runs the offline generator `hrm.synth.synthesize` on every environment of
`synth.envs`, `synth:NAME` on the one environment NAME names (see `synth_env`); anything else
`hrm.data.pull.pull`. The new snapshot is written next to the old one and moved over it only when
complete; the generator's resume files (`.state.json`, `.baseline.json`) stay next to the partial
file while it is incomplete and are deleted once it is moved into place, so the data directory
holds only the rows (its DVC hash then depends on nothing but them). Inside a DVC repository,
`dvc add data` then makes `data.dvc` track it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hrm.config import Params
from hrm.errors import HrmError, InputError

SYNTH_PREFIX = "synth:"


@dataclass(frozen=True)
class MaterialiseResult:
    snapshot: str
    action: str
    """`present`, `dvc-pull`, `synth` or `pull`."""
    tracked: bool
    """True when `dvc add` ran (data.dvc now tracks the data directory)."""
    message: str
    replaced: bool = False
    """True when an existing snapshot was replaced (an explicit source was given)."""


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


SYNTH_SIDECARS = (".state.json", ".baseline.json")
"""Suffixes of the generator's resume files next to its output (`hrm.synth.generator`)."""


def synth_envs(params: Params, source: str) -> list[str]:
    """The `envs.repos` keys a `synth:` source generates from, in order.

    `synth:` (empty NAME): every environment of `synth.envs`; `synth:NAME`: the one `synth_env`
    resolves.
    """
    if not source[len(SYNTH_PREFIX):].strip():
        return list(params.synth.envs)
    return [synth_env(params, source)]


def synth_env(params: Params, source: str) -> str:
    """The `envs.repos` key a `synth:NAME` source names.

    NAME is a key of `envs.repos`, or a repo's short name (`tenacity`, `jd__tenacity`: the
    `name` / `owner__name` of a `swesmith/owner__name.commit` key). Raises InputError naming
    `envs.repos` when NAME is empty, matches no entry, or several.
    """
    name = source[len(SYNTH_PREFIX):].strip()
    repos = sorted(params.envs.repos)
    if not name:
        raise InputError(f"source {source!r} names no environment (`synth:` alone means every "
                         "environment of synth.envs: see synth_envs)")
    if name in params.envs.repos:
        return name

    def short_names(repo_id: str) -> set[str]:
        base = repo_id.rsplit("/", 1)[-1]
        owner_name = base.rsplit(".", 1)[0] if "." in base else base
        return {base, owner_name, owner_name.split("__", 1)[-1]}

    matches = [r for r in repos if name in short_names(r)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InputError(f"source {source!r}: no environment {name!r} in envs.repos "
                         f"(known: {repos or 'none'}); add one or name a known repo")
    raise InputError(f"source {source!r}: {name!r} matches several envs.repos entries "
                     f"({matches}); name the full repo id")


def obtain(params: Params, source: str, out_path: Path) -> tuple[str, str]:
    """Write the snapshot for `source` to `out_path`: generate it (`synth:`) or pull it.

    Returns (action, message). Shared by `materialise` (DVC) and the KFP ingest component.
    """
    from hrm.data.pull import pull

    if source.startswith(SYNTH_PREFIX):
        from hrm.synth import synthesize

        envs = synth_envs(params, source)
        if envs != list(params.synth.envs):
            params = params.model_copy(
                update={"synth": params.synth.model_copy(update={"envs": envs})})
        result = synthesize(params, out_path)
        per_env = ", ".join(f"{e.env}: {e.kept}" for e in result.envs)
        return "synth", (f"generated {out_path} from {source}: {result.kept} instances "
                         f"({per_env})")
    summary = pull(source, out_path, params.data)
    return "pull", f"pulled {summary.rows} rows from {source} into {out_path}"


def _obtain_replacing(params: Params, source: str, snapshot: Path) -> tuple[str, str]:
    """`obtain` into `<snapshot>.partial`, then move it over `snapshot`: a failed or interrupted
    run never leaves a half snapshot in its place, and an interrupted generator resumes from
    the partial file (and its resume files) on the next call. Once moved, the generator's
    resume files are deleted, and so are any of the replaced snapshot."""
    partial = snapshot.with_name(snapshot.name + ".partial")
    action, message = obtain(params, source, partial)
    os.replace(partial, snapshot)
    for suffix in SYNTH_SIDECARS:
        for done in (partial.with_name(partial.name + suffix),
                     snapshot.with_name(snapshot.name + suffix)):
            done.unlink(missing_ok=True)
    return action, message.replace(str(partial), str(snapshot))


def snapshot_pointer(snapshot: str | Path) -> Path:
    """The `.dvc` file that tracks the snapshot: its top directory's (`data/...` -> `data.dvc`),
    relative to the project root."""
    return Path(Path(snapshot).parts[0] + ".dvc")


def materialise(params: Params, source: str | None = None, root: str | Path = ".") -> MaterialiseResult:
    """Ensure the snapshot `params.data.snapshot` (relative to `root`) exists; see the module doc.

    `source` given: always produce the snapshot from it (replacing one that exists). None: keep
    an existing snapshot, else `dvc pull` it, else produce it from `data.source`.
    """
    root = Path(root)
    snapshot = root / params.data.snapshot
    in_dvc_repo = (root / ".dvc").is_dir()
    replaced = False
    if source:
        replaced = snapshot.exists()
    else:
        if snapshot.exists():
            return MaterialiseResult(str(snapshot), "present", False,
                                     f"{snapshot} already exists: nothing to do (give a source "
                                     "to replace it)")
        pointer = root / snapshot_pointer(params.data.snapshot)
        if in_dvc_repo and pointer.exists() and _has_remote(root):
            _dvc("pull", pointer.name, cwd=root)
            if not snapshot.exists():
                raise HrmError(f"`dvc pull {pointer.name}` ran but {snapshot} is still missing")
            return MaterialiseResult(str(snapshot), "dvc-pull", False,
                                     f"restored {snapshot} with dvc pull")

    action, message = _obtain_replacing(params, source or params.data.source, snapshot)
    if replaced:
        message = f"replaced the existing snapshot (explicit source {source!r}): {message}"
    tracked = False
    if in_dvc_repo:
        data_dir = Path(params.data.snapshot).parts[0]
        _dvc("add", data_dir, cwd=root)
        tracked = True
        message += f"; `dvc add {data_dir}` tracks it in {data_dir}.dvc"
    return MaterialiseResult(str(snapshot), action, tracked, message, replaced)
