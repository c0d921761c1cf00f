"""Two gloo processes under torchrun give the same training as one process (same global batch)."""

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


def _run(nproc: int, params_file: Path, out: Path, port: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={port}", str(WORKER), str(params_file), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "final.pt", weights_only=False)


@pytest.mark.slow
def test_two_processes_match_one(tiny_params_file, tmp_path):
    raw = yaml.safe_load(tiny_params_file.read_text())
    # One segment per example (halt_max_steps 1): every row halts every step, so both launches
    # consume examples in the same order and the comparison is exact up to float summation order.
    raw["profiles"]["tiny"]["model"]["halt_max_steps"] = 1
    tiny_params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
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
