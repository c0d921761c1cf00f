"""What masking and trimming the padding saves in the foundation's training steps, on the real
corpus rows of a pipeline run (not part of the test suite).

Four settings of the same phase, each from the same seed, timed over the same number of steps
after a warm-up, alternated in one process so load affects them alike:

  full width   model.mask_padding off, no length buckets (the recipe before both), attention
               kernel in bf16 under bf16 autocast (hrm.model.attention.CPU_KERNEL_FP32 off)
  + fp32 kernel    the same with the CPU attention kernel in fp32
  trimmed      mask_padding on, the phase's bucket_rows, bf16 kernel
  trimmed + fp32   the committed recipe

For each: median and mean step time (s), the mean width the segments ran on, and the ratio to
the first.

    .venv/bin/python benchmarks/padding_trim.py --run . [--steps 60] [--rounds 2]

`--run`: a directory holding params.yaml and artifacts/sequences + artifacts/tokenizer (a
`make run`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import hrm.model.attention as attention
from hrm.config import Params, load_params
from hrm.model.act import active_width
from hrm.train.data import load_train_arrays
from hrm.train.loop import record_step, setup_phase, train_step

SETTINGS = {  # name: (mask_padding and bucketing, fp32 kernel)
    "full width": (False, False),
    "+ fp32 kernel": (False, True),
    "trimmed": (True, False),
    "trimmed + fp32": (True, True),
}


def params_for(base: Params, trimmed: bool) -> Params:
    raw = base.model_dump()
    if not trimmed:
        raw["model"]["mask_padding"] = False
        for phase in raw["train"]["phases"]:
            phase["bucket_rows"] = 0
    return Params.model_validate(raw)


def time_steps(params: Params, run: Path, arrays, steps: int, warmup: int) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as out:
        ph, st = setup_phase(params, "foundation", arrays, out, run / "artifacts" / "tokenizer")
        times, widths = [], []
        for i in range(warmup + steps):
            width = active_width(st.carry.inputs, st.carry.valid) if ph.model_cfg.mask_padding else arrays.seq_len
            start = time.perf_counter()
            so = train_step(ph, st, st.model)
            record_step(ph, st, so)
            if i >= warmup:
                times.append(time.perf_counter() - start)
                widths.append(width)
    return times, statistics.mean(widths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("."))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="times each setting runs, alternated")
    args = ap.parse_args()
    base = load_params(args.run / "params.yaml", "cpu")
    arrays = load_train_arrays(args.run / "artifacts" / "sequences", "corpus")
    print(f"{len(arrays.inputs)} corpus rows of {arrays.seq_len}; precision {base.train.precision}; "
          f"batch {base.train.batch_size}; load {os.getloadavg()[0]:.1f}")
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    widths: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (trimmed, fp32_kernel) in SETTINGS.items():
            attention.CPU_KERNEL_FP32 = fp32_kernel
            times, widths[name] = time_steps(params_for(base, trimmed), args.run, arrays, args.steps, args.warmup)
            results[name] += times
    attention.CPU_KERNEL_FP32 = True
    first = statistics.median(results["full width"])
    print(f"{'setting':16s} {'median s':>9s} {'mean s':>7s} {'width':>6s} {'ratio':>6s}")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"{name:16s} {med:9.4f} {statistics.mean(times):7.4f} {widths[name]:6.0f} {med / first:6.2f}")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
