"""Checkpoints: full training state, atomic writes, sha256 verification, keep-last-K, resume.

Layout of a checkpoints directory:
    step-00000120.pt        torch.save of the state dict below
    step-00000120.json      manifest: {"file", "sha256", "bytes", "step", "epoch", "phase"}

The .pt is written to a temporary file, fsynced and renamed; the manifest is written the same way
AFTER it, so a manifest names a complete file. On load the sha256 is recomputed and compared; a
mismatch (or a missing manifest) marks the checkpoint corrupt.

Resolving a checkpoints DIRECTORY: `resolve_checkpoint` (evaluation, the hand-off from one phase to
the next, `--resume PATH`, the registry) takes the newest checkpoint and raises `CorruptCheckpoint`
naming the file when it does not verify: never an older one in its place. Only `latest_valid`
(`--resume auto`, crash recovery inside a phase) skips a corrupt newest checkpoint, with a warning.

State saved: model (and EMA) weights, optimizer, LR schedule position (step, examples consumed),
phase step and global epoch counters, RNG states (torch, numpy, python, the exploration
generator), the feeder position (epoch, position), the ACT carry (every row's latent state and
data, so resumed training continues the same rows exactly), the epoch metric accumulators and the
history so far, the config, the tokenizer fingerprint and the code version.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from hrm.config import ModelConfig, TrainConfig
from hrm.errors import HrmError, InputError

_NAME_RE = re.compile(r"^step-(\d{8})\.pt$")


class CorruptCheckpoint(InputError):
    """A checkpoint whose checksum or manifest does not verify."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointWriteError(HrmError):
    """A checkpoint could not be written (disk full, file-size limit, permissions)."""


TMP_SUFFIX = ".tmp"


def _atomic_write(path: Path, write) -> None:
    """Write through `write(fileobj)` to a temp file in the same dir, fsync, rename over `path`.

    A write the filesystem refuses (no space left, a file-size limit, no permission) is a
    `CheckpointWriteError` naming the directory, and leaves no temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        refused = _refused_write(err)
        if refused is not None:
            raise CheckpointWriteError(f"{path.parent}: cannot write {path.name}: "
                                       f"{os.strerror(refused)} (free space or raise the limit, "
                                       "then resume with --resume auto)") from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _refused_write(err: BaseException) -> int | None:
    """The errno of a filesystem refusal in `err`'s chain (torch.save reports a failed write as
    a RuntimeError raised while closing, with the OSError as its context), else None."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                                                      errno.EACCES, errno.EROFS):
            return err.errno
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def code_version() -> str | None:
    """The git commit of the working tree (with `-dirty` when modified), or None outside git."""
    from hrm.tracking import git_state

    commit, dirty = git_state(Path(__file__).resolve().parents[2])
    return None if commit is None else commit + ("-dirty" if dirty else "")


def save_checkpoint(ckpt_dir: Path, state: dict[str, Any], *, keep: int) -> Path:
    """Atomically write `state` as step-<step>.pt plus its manifest; prune to the newest `keep`."""
    ckpt_dir = Path(ckpt_dir)
    step = int(state["step"])
    path = ckpt_dir / f"step-{step:08d}.pt"
    _atomic_write(path, lambda fh: torch.save(state, fh))
    manifest = {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "step": step,
        "epoch": int(state["global_epoch"]),
        "phase": state.get("phase"),
    }
    _atomic_write(path.with_suffix(".json"), lambda fh: fh.write(json.dumps(manifest, indent=2).encode()))
    prune(ckpt_dir, keep=keep, written=path)
    return path


def prune(ckpt_dir: Path, *, keep: int, written: Path) -> list[Path]:
    """Keep `written` and the newest valid others, `keep` in all; returns what was removed.

    Only VALID checkpoints count toward `keep`: a corrupt one (which `resolve_checkpoint` would
    refuse as the newest) is set aside as `<name>.corrupt` with a warning, never kept in place
    of a valid one, and never the reason a just-written checkpoint is pruned (a run resumed from
    an older valid checkpoint writes lower step numbers than the corrupt ones above it)."""
    others = [p for p in reversed(list_checkpoints(ckpt_dir)) if p != written]
    kept, removed = [written], []
    for other in others:
        try:
            verify(other)
        except CorruptCheckpoint as err:
            warnings.warn(f"setting aside corrupt checkpoint: {err}", stacklevel=2)
            other.rename(other.with_name(other.name + ".corrupt"))
            removed.append(other)
            continue
        if len(kept) < keep:
            kept.append(other)
            continue
        other.unlink(missing_ok=True)
        other.with_suffix(".json").unlink(missing_ok=True)
        removed.append(other)
    return removed


def remove_orphans(ckpt_dir: Path) -> list[Path]:
    """Delete the temp files a killed write left in `ckpt_dir` (`.step-*.pt.*.tmp`, never a
    checkpoint or a manifest); returns them. Called when a phase starts."""
    if not Path(ckpt_dir).is_dir():
        return []
    found = [p for p in Path(ckpt_dir).iterdir()
             if p.name.startswith(".step-") and p.name.endswith(TMP_SUFFIX) and p.is_file()]
    for orphan in found:
        orphan.unlink(missing_ok=True)
    return found


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint files in `ckpt_dir`, oldest first (by step)."""
    if not Path(ckpt_dir).is_dir():
        return []
    found = [p for p in Path(ckpt_dir).iterdir() if _NAME_RE.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME_RE.match(p.name).group(1)))


def verify(path: Path) -> None:
    """Raise CorruptCheckpoint unless the manifest exists and its sha256 matches the file."""
    manifest_path = path.with_suffix(".json")
    if not manifest_path.exists():
        raise CorruptCheckpoint("no manifest (incomplete write?)", path=str(path))
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptCheckpoint(f"unreadable manifest: {err}", path=str(manifest_path)) from None
    actual = sha256_file(path)
    if actual != manifest.get("sha256"):
        raise CorruptCheckpoint(f"sha256 mismatch (manifest {manifest.get('sha256')}, file {actual})", path=str(path))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify then load one checkpoint file."""
    verify(Path(path))
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # a verified file that still fails to unpickle is corrupt too
        raise CorruptCheckpoint(f"cannot load: {err}", path=str(path)) from None


def latest_valid(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt ones are skipped with a warning.

    For `--resume auto` (crash recovery inside a phase) only: everything else uses
    `resolve_checkpoint`, which refuses a corrupt newest checkpoint.
    """
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            verify(path)
        except CorruptCheckpoint as err:
            warnings.warn(f"skipping corrupt checkpoint: {err}", stacklevel=2)
            continue
        return path
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """The one checkpoint file `path` names, verified.

    A file is itself; a checkpoints directory is its newest checkpoint (by step). Raises
    `CorruptCheckpoint` naming the file when it does not verify (never falls back to an older
    one) and `InputError` when the path does not exist or the directory holds no checkpoint.
    """
    path = Path(path)
    if path.is_file():
        verify(path)
        return path
    if not path.is_dir():
        raise InputError("checkpoint path does not exist", path=str(path))
    found = list_checkpoints(path)
    if not found:
        raise InputError("no checkpoint (step-XXXXXXXX.pt) in directory", path=str(path))
    newest = found[-1]
    try:
        verify(newest)
    except CorruptCheckpoint as err:
        raise CorruptCheckpoint(f"the newest checkpoint of the directory is corrupt ({err}); refusing to "
                                "fall back to an older one: pass an older checkpoint file explicitly or "
                                "retrain", path=str(newest)) from None
    return newest


@dataclass
class CheckpointInfo:
    """What `load_for_inference` says about the loaded weights."""

    path: str
    phase: str | None
    step: int
    global_epoch: int
    vocab_size: int
    seq_len: int
    model_config: dict
    tokenizer_fingerprint: str | None
    code_version: str | None
    weights: str
    """`ema` or `model`: which weights were loaded."""
    train_config: dict | None = None
    """The train settings the checkpoint was trained with (None in older checkpoints)."""


def _with_defaults(schema, recorded: dict | None) -> dict | None:
    """A recorded config with every setting added since it was written at its default, so it
    compares equal to today's dump of the same settings; as recorded when it no longer validates
    (a setting that no longer exists: it then differs from today's, as it should)."""
    if recorded is None:
        return None
    try:
        return schema.model_validate(recorded).model_dump(mode="json")
    except ValidationError:
        return recorded


def recorded_model_config(recorded: dict) -> dict:
    """A checkpoint's `model_config`, settings added since at their defaults (`_with_defaults`)."""
    return _with_defaults(ModelConfig, recorded)


def recorded_train_config(recorded: dict | None) -> dict | None:
    """A checkpoint's `train_config`, settings added since at their defaults (each phase's too)."""
    return _with_defaults(TrainConfig, recorded)


def load_for_inference(path: str | Path, device: str | torch.device = "cpu", *, use_ema: bool = True):
    """Build the model from a checkpoint (file, or checkpoints dir: its newest, which must verify).

    Returns (model, CheckpointInfo). EMA weights are used when the checkpoint has them and
    `use_ema` is true.
    """
    from hrm.model import build_model

    file = resolve_checkpoint(path)
    state = load_checkpoint(file)
    cfg = ModelConfig.model_validate(state["model_config"])
    model = build_model(cfg, int(state["vocab_size"]), int(state["seq_len"]), device,
                        int(state.get("slots", 4)), int(state.get("max_insertions", 16)))
    weights = "ema" if (use_ema and state.get("ema") is not None) else "model"
    model.load_state_dict(state["ema"] if weights == "ema" else state["model"])
    model.eval()
    info = CheckpointInfo(
        path=str(file),
        phase=state.get("phase"),
        step=int(state["step"]),
        global_epoch=int(state["global_epoch"]),
        vocab_size=int(state["vocab_size"]),
        seq_len=int(state["seq_len"]),
        model_config=cfg.model_dump(mode="json"),
        tokenizer_fingerprint=state.get("tokenizer_fingerprint"),
        code_version=state.get("code_version"),
        weights=weights,
        train_config=recorded_train_config(state.get("train_config")),
    )
    return model, info
