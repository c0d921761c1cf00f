"""Checkpoints under faults: corrupt neighbours never cost a valid checkpoint, a killed write's
temp file is cleaned at the next start, a full disk (here: a file-size limit) is a clear error
naming the directory, and `--resume` refuses a checkpoint written with other train settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hrm.errors import InputError
from hrm.train import train_phase
from hrm.train.checkpoint import (
    list_checkpoints,
    remove_orphans,
    resolve_checkpoint,
    save_checkpoint,
    verify,
)


def _state(step: int) -> dict:
    return {"step": step, "global_epoch": 1, "phase": "foundation", "weights": list(range(step))}


def _corrupt(ckpt_dir: Path, step: int) -> Path:
    path = ckpt_dir / f"step-{step:08d}.pt"
    path.write_bytes(b"garbage")
    path.with_suffix(".json").write_text(json.dumps({"file": path.name, "sha256": "0" * 64}))
    return path


def test_corrupt_newer_checkpoints_never_prune_a_valid_new_one(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for step in (500, 600):
        _corrupt(ckpt, step)
    with pytest.warns(UserWarning, match="setting aside corrupt checkpoint"):
        written = save_checkpoint(ckpt, _state(100), keep=2)
    verify(written)
    assert [p.name for p in list_checkpoints(ckpt)] == ["step-00000100.pt"]
    assert sorted(p.name for p in ckpt.glob("*.corrupt")) == ["step-00000500.pt.corrupt",
                                                             "step-00000600.pt.corrupt"]
    assert resolve_checkpoint(ckpt) == written  # the newest is valid again
    save_checkpoint(ckpt, _state(101), keep=2)
    save_checkpoint(ckpt, _state(102), keep=2)
    assert [p.name for p in list_checkpoints(ckpt)] == ["step-00000101.pt", "step-00000102.pt"]
    assert not (ckpt / "step-00000100.json").exists()


def test_a_killed_write_leaves_a_temp_file_the_next_start_removes(tmp_path):
    ckpt = tmp_path / "checkpoints"
    save_checkpoint(ckpt, _state(3), keep=2)
    orphan = ckpt / ".step-00000004.pt.k2j3h4.tmp"
    orphan.write_bytes(b"half a checkpoint")
    assert remove_orphans(ckpt) == [orphan]
    assert not orphan.exists() and [p.name for p in list_checkpoints(ckpt)] == ["step-00000003.pt"]


def test_a_full_disk_is_a_clear_error_naming_the_directory(tmp_path):
    """A real OS limit (RLIMIT_FSIZE: writes past 64 KiB fail with EFBIG, as ENOSPC would on a
    full disk) in a child process: the error names the directory, no temp file stays."""
    ckpt = tmp_path / "checkpoints"
    code = f"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
from hrm.train.checkpoint import CheckpointWriteError, save_checkpoint
try:
    save_checkpoint(Path({str(ckpt)!r}), {{"step": 7, "global_epoch": 1, "phase": "p",
                                          "blob": b"x" * 1_000_000}}, keep=2)
except CheckpointWriteError as err:
    print("ERROR", err)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"ERROR {ckpt}: cannot write step-00000007.pt: File too large" in done.stdout
    assert "--resume auto" in done.stdout
    assert list(ckpt.iterdir()) == []  # neither the checkpoint nor its temp file


class Killed(Exception):
    pass


def test_resume_refuses_a_checkpoint_of_other_train_settings(tiny_params, arrays, tmp_path):
    from .test_train import _with

    params = _with(tiny_params, epochs=2, checkpoint_every_steps=2, keep_checkpoints=3)

    def kill(info):
        if info.step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_phase(params, "foundation", arrays, tmp_path, on_step=kill, final_eval=False,
                    progress=False)
    phases = params.train.phases
    faster = _with(params, phases=[phases[0].model_copy(update={"lr": phases[0].lr * 2}),
                                   *phases[1:]], weight_decay=0.05)
    with pytest.raises(InputError, match=r"other train settings \(train.weight_decay: 0.2 -> 0.05; "
                                         r"phase.lr: 0.003 -> 0.006\)"):
        train_phase(faster, "foundation", arrays, tmp_path, resume="auto", final_eval=False,
                    progress=False)
    # operational settings may change; so may anything when asked for
    moved = _with(params, keep_checkpoints=5, num_threads=1)
    result = train_phase(moved, "foundation", arrays, tmp_path, resume="auto", final_eval=False,
                         progress=False)
    assert result.step_losses
    with pytest.raises(Killed):
        train_phase(params, "foundation", arrays, tmp_path / "again", on_step=kill,
                    final_eval=False, progress=False)
    allowed = train_phase(faster, "foundation", arrays, tmp_path / "again", resume="auto",
                          final_eval=False, progress=False, allow_config_change=True)
    assert allowed.step_losses


def test_resume_accepts_a_checkpoint_written_before_settings_were_added(tiny_params, arrays, tmp_path):
    """A checkpoint from before `model.mask_padding` and `phase.bucket_rows` existed records
    neither; resumed under the same settings (both at their defaults, as the gpu profile has
    them) it continues, and a control checkpoint of that age pairs with today's model."""
    from hrm.train.checkpoint import latest_valid, load_checkpoint, load_for_inference

    from .test_train import _with

    params = _with(tiny_params, epochs=2, checkpoint_every_steps=2, keep_checkpoints=3)
    phases = [p.model_copy(update={"bucket_rows": 0}) for p in params.train.phases]
    params = params.model_copy(update={"model": params.model.model_copy(update={"mask_padding": False}),
                                       "train": params.train.model_copy(update={"phases": phases})})

    def kill(info):
        if info.step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_phase(params, "foundation", arrays, tmp_path, on_step=kill, final_eval=False, progress=False)
    newest = latest_valid(tmp_path / "checkpoints")
    state = load_checkpoint(newest)
    del state["model_config"]["mask_padding"]
    for phase in state["train_config"]["phases"]:
        del phase["bucket_rows"]
    newest.unlink()
    old = save_checkpoint(tmp_path / "checkpoints", state, keep=3)
    _, info = load_for_inference(old)
    assert info.model_config == params.model.model_dump(mode="json")
    assert info.train_config["phases"][0]["bucket_rows"] == 0
    result = train_phase(params, "foundation", arrays, tmp_path, resume="auto", final_eval=False,
                         progress=False)
    assert result.step_losses
    # a setting that differs from its default is still a different model
    masked = params.model_copy(update={"model": params.model.model_copy(update={"mask_padding": True})})
    (tmp_path / "m" / "checkpoints").mkdir(parents=True)
    save_checkpoint(tmp_path / "m" / "checkpoints", state, keep=3)  # the old record again
    with pytest.raises(InputError, match="different model config"):
        train_phase(masked, "foundation", arrays, tmp_path / "m", resume="auto", final_eval=False,
                    progress=False)
