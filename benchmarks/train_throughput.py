"""Training throughput and utilisation of the HRM on this machine (not part of the test suite).

For each config (the params.yaml cpu profile, and the reference config: hidden 256, 4 heads,
2+2 layers, 2x2 cycles, seq 512, batch 8, vocab 4096, bootstrapped q_continue, both with their
`model.head_positions`) and each precision (fp32, bf16 autocast) it reports:
  tokens/s     = batch * seq_len / median optimizer-step time (one ACT segment per step, plus the
                 bootstrap segment, gradient clipping and the training loop's optimizer), after
                 warm-up steps, with the training loop's allocator setting (`keep_freed_memory`);
  utilisation  = achieved model FLOP/s / matmul peak, where model FLOPs of one step are counted by
                 torch.utils.flop_counter (forward, backward and the bootstrap segment) and the
                 peak is measured in the same process with large square matmuls of the same dtype.
It also trains the reference config for a few steps in fp32 and bf16 from the same seed and
reports the largest relative difference of the loss curves.

    .venv/bin/python benchmarks/train_throughput.py [--steps 5] [--threads 2]
    .venv/bin/python benchmarks/train_throughput.py --configs cpu --precisions bf16 --seq-lens 256,192,160
    .venv/bin/python benchmarks/train_throughput.py --configs cpu --precisions bf16 --bf16-attention
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hrm.config import ModelConfig, SequencesConfig, TrainConfig, load_params
from hrm.model import build_model
from hrm.model.losses import act_losses
from hrm.train.device import keep_freed_memory
from hrm.train.loop import compile_reasoning_modules
from hrm.train.optim import build_optimizer


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def synthetic_batch(seq: int, batch: int, vocab: int, seq_cfg: SequencesConfig, gen: torch.Generator):
    """(inputs [B, L], labels [B, L], inserts [B, E, K]) in the layout of hrm.sequences
    (docs/sequences.md): bos, a statement of `max_statement_tokens`, sep, the anchor, then code
    to the end of the row, every code position labelled. About 2% of the code positions are
    edited (each replaced by its left neighbour's token: a learnable task) and every 64th code
    position inserts its left neighbour's token (up to `max_insertions`), as real fixes are."""
    E, K = seq_cfg.max_insertions, seq_cfg.slots
    inputs = torch.randint(7, vocab, (batch, seq), generator=gen, dtype=torch.int32)
    inputs[:, 0] = 1  # bos
    anchor = min(seq_cfg.max_statement_tokens + 2, seq // 2)
    inputs[:, anchor - 1] = 3  # sep
    labels = torch.full((batch, seq), -100, dtype=torch.int64)
    labels[:, anchor:] = inputs[:, anchor:].long()
    edited = torch.arange(anchor + 1, seq, 50)
    labels[:, edited] = inputs[:, edited - 1].long()
    inserts = torch.full((batch, E, K), -100, dtype=torch.int64)
    inserts[:, :, 0] = -1
    for e, pos in enumerate(range(anchor + 7, seq, 64)[:E]):
        inserts[:, e, 0] = pos
        inserts[:, e, 1] = inputs[:, pos - 1].long()
        inserts[:, e, 2] = 2  # eos
    return inputs, labels, inserts


def make_step(cfg: ModelConfig, vocab: int, seq: int, batch: int, precision: str, seed: int = 0,
              train_cfg: TrainConfig | None = None, seq_cfg: SequencesConfig | None = None):
    """One optimizer step of the training loop (forward with the heads on `cfg.head_positions`
    positions per row, losses, backward, gradient clipping, the project's optimizer:
    `train_cfg`, default the cpu profile's; `seq_cfg`: slots and max_insertions, default the cpu
    profile's)."""
    cpu = load_params("params.yaml", "cpu")
    train_cfg = train_cfg or cpu.train
    seq_cfg = seq_cfg or cpu.sequences
    torch.manual_seed(seed)
    model = build_model(cfg, vocab, seq, "cpu", seq_cfg.slots, seq_cfg.max_insertions).train()
    if cfg.compile:
        compile_reasoning_modules(model)
    opt = build_optimizer(model, train_cfg, 1e-3)
    gen = torch.Generator().manual_seed(seed)
    inputs, labels, inserts = synthetic_batch(seq, batch, vocab, seq_cfg, gen)
    state = {"carry": model.initial_carry(batch, torch.device("cpu"))}
    state["carry"].inputs, state["carry"].labels, state["carry"].inserts = inputs, labels, inserts
    state["carry"].valid[:] = True
    n_labels = float((labels != -100).sum())

    def step() -> float:
        carry = state["carry"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(carry, labels_only=True)
        parts = act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue,
                           out.target_q_continue, own_tokens=out.own_tokens,
                           insert_logits=out.insert_logits, insert_labels=out.insert_labels,
                           slot_logits=out.slot_logits, slot_labels=out.slot_labels,
                           slot_rows=out.slot_rows, slot_cols=out.slot_cols, keep_scale=out.keep_scale,
                           q_weight=0.5, edit_weight=train_cfg.edit_weight, lm_denominator=n_labels)
        parts.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        # Keep every row in flight (no halting) so each step is one full segment.
        state["carry"] = out.carry
        state["carry"].fresh[:] = out.carry.halted
        return float(parts.lm.detach())

    return step


def measure(name: str, cfg: ModelConfig, vocab: int, seq: int, batch: int, precision: str, steps: int) -> None:
    """Median over `steps` timed steps, each followed by a matmul-peak probe of the same dtype
    (the machine is shared: the pairs show how much of it this process got at that moment)."""
    step = make_step(cfg, vocab, seq, batch, precision)
    t0 = time.perf_counter()
    step()
    step()  # warm-up (and torch.compile) outside the timings
    warmup = time.perf_counter() - t0
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = 512 if precision == "bf16" else 2048  # emulated bf16 (no avx512_bf16/amx): ~1 GFLOP/s
    times, peaks = [], []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        peaks.append(matmul_peak(dtype, n=n, reps=2 if precision == "bf16" else 10))
    dt, peak = statistics.median(times), statistics.median(peaks)
    util = statistics.median(flops / t / p for t, p in zip(times, peaks, strict=True))
    print(f"{name:10s} {precision:5s} tokens/s {batch * seq / dt:8.0f} (best {batch * seq / min(times):6.0f})  "
          f"step {dt:6.3f}s  {flops / 1e9:6.1f} GFLOP/step  model {flops / dt / 1e9:6.1f} GFLOP/s  "
          f"peak {peak / 1e9:6.1f} GFLOP/s  utilisation {util:5.1%}  (2 warm-up steps {warmup:.1f}s)", flush=True)



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--curve-steps", type=int, default=20)
    ap.add_argument("--configs", default="cpu,reference", help="comma list of cpu, reference")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the reasoning modules")
    ap.add_argument("--default-malloc", action="store_true",
                    help="glibc's default mmap/trim behaviour (no hrm.train.device.keep_freed_memory)")
    ap.add_argument("--no-reuse", action="store_true", help="bootstrap_reuse off (reference behaviour)")
    ap.add_argument("--head-positions", type=int, default=None,
                    help="override model.head_positions of both configs (0: the heads on every labelled position)")
    ap.add_argument("--seq-lens", default="",
                    help="comma list of row lengths: the cpu config measured at each (what trimming "
                         "padding would save; the corpus rows average ~187 of 320 tokens)")
    ap.add_argument("--bf16-attention", action="store_true",
                    help="run the CPU attention kernel in bf16 under bf16 autocast, as before "
                         "hrm.model.attention.CPU_KERNEL_FP32 (the comparison it was measured by)")
    args = ap.parse_args()
    if args.bf16_attention:
        import hrm.model.attention

        hrm.model.attention.CPU_KERNEL_FP32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.default_malloc:
        keep_freed_memory()  # as hrm.train.loop.train_phase does on CPU
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    params = load_params("params.yaml", "cpu")
    extra = {"compile": args.compile, "bootstrap_reuse": not args.no_reuse}
    if args.head_positions is not None:
        extra["head_positions"] = args.head_positions
    ref = ModelConfig(hidden_size=256, num_heads=4, H_layers=2, L_layers=2, H_cycles=2, L_cycles=2,
                      q_target="bootstrap", attention="sdpa", **extra)
    cpu = params.model.model_copy(update=extra)
    configs, precisions = args.configs.split(","), args.precisions.split(",")
    print(f"bf16 matmul in hardware (mkldnn): {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {extra}")
    for precision in precisions:
        if "cpu" in configs:
            measure("cpu", cpu, params.tokenizer.vocab_size, params.sequences.seq_len,
                    params.train.batch_size, precision, args.steps)
        for seq in [int(v) for v in args.seq_lens.split(",") if v]:
            measure(f"cpu L={seq}", cpu, params.tokenizer.vocab_size, seq, params.train.batch_size,
                    precision, args.steps)
        if "reference" in configs:
            measure("reference", ref, 4096, 512, 8, precision, args.steps)
    if args.curve_steps <= 0 or len(precisions) < 2:
        return
    curves = {}
    for precision in ("fp32", "bf16"):
        step = make_step(ref, 4096, 512, 8, precision, seed=1)
        curves[precision] = [step() for _ in range(args.curve_steps)]
    rel = max(abs(a - b) / abs(a) for a, b in zip(curves["fp32"], curves["bf16"], strict=True))
    print(f"loss curve fp32 {curves['fp32'][0]:.3f} -> {curves['fp32'][-1]:.3f}, "
          f"bf16 {curves['bf16'][0]:.3f} -> {curves['bf16'][-1]:.3f}, max relative difference {rel:.2%}")


if __name__ == "__main__":
    main()
