"""Two gloo processes under torchrun give the same training as one process (same global batch),
also with the ACT carry kept across optimizer steps, and a 2-process run resumes exactly."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def _run(nproc: int, params_file: Path, out: Path, port: int, *options: str) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={port}", str(WORKER), str(params_file), str(out),
           *options]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = out / "final.pt"
    return torch.load(final, weights_only=False) if final.exists() else None


def _set_tiny(params_file: Path, model: dict, train: dict | None = None, epochs: int = 2) -> None:
    """Tiny-profile overrides; precision fp32 (the comparisons are numeric; `auto` is bf16 on a
    CPU with bf16 matrix units) and `epochs` for the foundation phase."""
    raw = yaml.safe_load(params_file.read_text())
    tiny = raw["profiles"]["tiny"]
    tiny["model"].update(model)
    tiny["train"].update({"precision": "fp32", **(train or {})})
    tiny["phases"]["foundation"]["epochs"] = epochs
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow
def test_two_processes_match_one(tiny_params_file, tmp_path):
    # One segment per example (halt_max_steps 1): every row halts every step, so both launches
    # consume examples in the same order and the comparison is exact up to float summation order.
    _set_tiny(tiny_params_file, {"halt_max_steps": 1})
    one = _run(1, tiny_params_file, tmp_path / "one", 29531)
    two = _run(2, tiny_params_file, tmp_path / "two", 29532)
    assert len(one["losses"]) == len(two["losses"]) > 2
    assert torch.allclose(torch.tensor(one["losses"]), torch.tensor(two["losses"]), rtol=1e-4, atol=1e-5)
    # rank 0's val pass: present every epoch in both, same weights give the same values
    assert all(r["val_lm_loss"] is not None for r in one["history"] + two["history"])
    for r1, r2 in zip(one["history"], two["history"], strict=True):
        assert math.isclose(r1["val_lm_loss"], r2["val_lm_loss"], rel_tol=1e-3), (r1, r2)
    for key, value in one["model"].items():
        assert torch.allclose(value, two["model"][key], rtol=1e-3, atol=1e-5), key


@pytest.mark.slow
def test_two_processes_keep_the_carry_and_resume_exactly(tiny_params_file, tmp_path):
    """halt_max_steps 2 without exploration: rows keep their latent carry for a second optimizer
    step (every row runs 2 segments: the Q head never halts early in these few steps, so all rows
    halt together and both launches load the same examples). Then a 2-process run stopped after
    step 7 and continued with resume="auto" from its step-6 checkpoint (per-rank carries, feeder
    positions and RNG states) equals the uninterrupted 2-process run."""
    _set_tiny(tiny_params_file, {"halt_max_steps": 2, "halt_exploration_prob": 0.0},
              {"checkpoint_every_steps": 3, "keep_checkpoints": 10})
    one = _run(1, tiny_params_file, tmp_path / "one", 29533)
    two = _run(2, tiny_params_file, tmp_path / "two", 29534)
    assert len(one["losses"]) == len(two["losses"]) > 8
    assert all(r["act_steps"] == 2.0 for r in one["history"] + two["history"])
    assert torch.allclose(torch.tensor(one["losses"]), torch.tensor(two["losses"]), rtol=1e-4, atol=1e-5)
    for key, value in one["model"].items():
        assert torch.allclose(value, two["model"][key], rtol=1e-3, atol=1e-5), key

    assert _run(2, tiny_params_file, tmp_path / "resumed", 29535, "stop_at=7") is None
    resumed = _run(2, tiny_params_file, tmp_path / "resumed", 29536, "resume=auto")
    assert resumed["losses"] == two["losses"][6:]
    for key, value in two["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    strip = ("wall_time_s", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in two["history"]] == \
           [{k: v for k, v in r.items() if k not in strip} for r in resumed["history"]]
