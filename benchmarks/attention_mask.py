"""What a key-padding mask costs torch's scaled_dot_product_attention on this CPU (not a test).

The model's attention does not mask padding today (41.5% of the foundation's positions are
padding, BENCHMARKS.md "Training throughput"), so rows cannot be trimmed to their batch's
longest without changing what it computes. With a key mask they could, exactly. This measures
the kernel's forward + backward at the cpu profile's shapes (batch 32, 4 heads of 32 channels)
with and without a boolean key mask (each row's length drawn from [L/2, L]), fp32 and bf16,
in one process, alternating the two.

    .venv/bin/python benchmarks/attention_mask.py [--reps 30] [--lengths 320,192]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def step_time_ms(length: int, masked: bool, dtype: torch.dtype, reps: int, batch: int = 32,
                 heads: int = 4, head_dim: int = 32) -> float:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=gen).to(dtype).requires_grad_()
               for _ in range(3))
    mask = None
    if masked:
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen)
        mask = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :]

    def step() -> None:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()

    for _ in range(3):
        step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--lengths", default="320,192")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"bf16 matmul in hardware: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    for dtype in (torch.float32, torch.bfloat16):
        for length in (int(v) for v in args.lengths.split(",")):
            plain, masked = [], []
            for _ in range(2):  # alternate, so a load change hits both
                plain.append(step_time_ms(length, False, dtype, args.reps))
                masked.append(step_time_ms(length, True, dtype, args.reps))
            a, b = min(plain), min(masked)
            print(f"{str(dtype).removeprefix('torch.'):8s} L={length}: no mask {a:6.2f} ms, "
                  f"key mask {b:6.2f} ms ({b / a:.2f}x), forward + backward, median of {args.reps}")


if __name__ == "__main__":
    main()
