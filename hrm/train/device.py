"""Where and in what precision training runs: the device, bf16/fp16 autocast and its CPU
checks, the fp16 grad scaler, and the allocator setting that keeps CPU steps from page-faulting.

Used by training (`hrm.train.loop`), evaluation and inference (`resolve_device`) and the
throughput benchmark; none of it is model math.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from hrm.errors import InputError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("train.device is cuda but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The fp16 grad scaler (torch's defaults: initial scale 2**16, halved on overflow, doubled
    after 2000 clean steps); None for fp32/bf16."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed blocks of up to 32 MiB in the heap instead of unmapping them.

    A CPU training step allocates and frees hundreds of activation tensors of 1 to 25 MiB. By
    default glibc serves each from a fresh mmap and unmaps it on free, so every step page-faults
    (and the kernel zeroes) on the order of 100 MiB again: about 40,000 faults and 0.1 s of system
    time per step of the reference config. With a fixed mmap threshold of 32 MiB (glibc's maximum)
    and no trimming they come from reused heap memory; peak memory is unchanged. No-op (False)
    where glibc's `mallopt` is unavailable; the process-wide setting is idempotent."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(mallopt(m_trim_threshold, 2**30))


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> `bf16` on CUDA or on a CPU with native bf16 matmuls, else `fp32`; others as given."""
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def autocast_context(precision: str, device: torch.device):
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("train.precision=fp16 on CPU: autocast and GradScaler work here (tests use them), but "
                      "fp16 matmuls are not faster than fp32 on CPUs; use fp32 or bf16", stacklevel=2)
    elif precision == "fp16" and device.type != "cuda":
        raise InputError(f"train.precision=fp16 needs CUDA or CPU, not {device.type}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("train.precision=bf16 on a CPU without bf16 matrix instructions (avx512_bf16/amx_bf16): "
                      "oneDNN emulates bf16 matmuls, which runs far slower than fp32; use fp32 here",
                      stacklevel=2)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_native_bf16() -> bool:
    """True when oneDNN can run bf16 matmuls natively on this CPU (avx512_bf16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
