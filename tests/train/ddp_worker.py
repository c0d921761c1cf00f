"""Worker launched by torchrun in the DDP test (not collected: no test_ prefix).

Trains the tiny profile's foundation phase on synthetic arrays (with the per-epoch val pass) and
saves the final weights and history. Optional arguments: `stop_at=N` ends the run after optimizer
step N (every rank, like a kill; nothing is saved but the checkpoints), `resume=auto` continues
the phase from the newest checkpoint in the out dir.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import synthetic_arrays  # noqa: E402

from hrm.config import load_params  # noqa: E402
from hrm.train import train_phase  # noqa: E402
from hrm.train.distributed import (
    DistContext,  # noqa: E402
    shutdown_distributed,  # noqa: E402
)


class Stopped(Exception):
    pass


def main(params_file: str, out_dir: str, *options: str) -> None:
    import os

    opts = dict(o.split("=", 1) for o in options)
    stop_at = int(opts.get("stop_at", 0))

    def stop(info) -> None:
        if info.step == stop_at:
            raise Stopped

    params = load_params(params_file)
    # The val pass runs on rank 0 only, between the epoch end and the checkpoint's gather.
    try:
        result = train_phase(params, "foundation", synthetic_arrays(n=32), out_dir, final_eval=False,
                             progress=False, val_arrays=synthetic_arrays(n=8, seed=1),
                             resume=opts.get("resume", "none"), on_step=stop if stop_at else None)
    except Stopped:
        result = None
    if result is not None and int(os.environ.get("RANK", "0")) == 0:
        torch.save({"losses": result.step_losses, "history": result.history,
                    "model": torch.load(result.checkpoint, weights_only=False)["model"]},
                   Path(out_dir) / "final.pt")
    import torch.distributed as dist

    if dist.is_initialized():
        shutdown_distributed(DistContext(dist.get_rank(), 0, dist.get_world_size()))


if __name__ == "__main__":
    main(*sys.argv[1:])
