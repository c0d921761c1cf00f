"""Kubernetes resource requests and retry policy per kind of task, in one place.

Data steps are light and CPU-only; training asks for GPUs (the count is a pipeline parameter)
and enough host memory to stage a GPU-sized batch pipeline; evaluation runs the instances'
tests in sandboxes, so it gets more CPU. Retries are for infrastructure failures (pod
eviction, node loss, registry or hub hiccups), not for bad data: a step that rejects its
input fails the same way on every retry, which a small retry count keeps cheap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskResources:
    """CPU / memory requests and limits (Kubernetes quantities) and the retry count."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    retries: int


DATA = TaskResources(cpu_request="1", cpu_limit="2", memory_request="2G", memory_limit="8G", retries=2)
TRAIN = TaskResources(cpu_request="8", cpu_limit="16", memory_request="32G", memory_limit="64G", retries=1)
EVAL = TaskResources(cpu_request="4", cpu_limit="8", memory_request="8G", memory_limit="16G", retries=1)

GPU_RESOURCE = "nvidia.com/gpu"
"""Accelerator resource name the NVIDIA device plugin exposes on the cluster's nodes."""

RETRY_BACKOFF = "60s"
"""First retry after a minute (node replacement), doubling after that."""
