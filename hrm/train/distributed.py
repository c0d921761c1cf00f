"""Process-group handling for `torchrun` launches (gloo on CPU, NCCL on CUDA).

Without torchrun's environment (WORLD_SIZE unset or 1) everything is a single process and the
collective helpers are no-ops, so the training loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int
    local_rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks (float64 on the collective's device, returned on CPU)."""
        if not self.enabled:
            return values
        buf = values.to(self._device(), dtype=torch.float64)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.cpu()

    def all_min(self, value: float) -> float:
        if not self.enabled:
            return value
        buf = torch.tensor([value], dtype=torch.float64, device=self._device())
        dist.all_reduce(buf, op=dist.ReduceOp.MIN)
        return float(buf.item())

    def gather_objects(self, obj):
        """Every rank's `obj`, in rank order (a one-element list without DDP)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 0, 1)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, local_rank, world)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
