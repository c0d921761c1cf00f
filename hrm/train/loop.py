"""One training phase: deep-supervision ACT training with checkpoints, history and exact resume.

`train_phase` is a pure function of its inputs (params, phase name, arrays, directories) to files
under `out_dir`: checkpoints/, history.csv, history.json, summary.json. It runs unchanged under
`torchrun` (DDP, rank-0 writes). MLflow logging lives in hrm.train.run (the file-level step).
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hrm.config import ModelConfig, Params, PhaseConfig
from hrm.errors import InputError, StepFailed
from hrm.model import HRMAct, build_model
from hrm.model.act import ActCarry
from hrm.model.losses import act_losses
from hrm.tokenizer import tokenizer_fingerprint
from hrm.train import checkpoint as ckpt
from hrm.train.data import RowFeeder, TrainArrays, fill_halted_rows
from hrm.train.distributed import DistContext, init_distributed
from hrm.train.history import EpochAccumulator, write_history, write_summary
from hrm.train.optim import EMA, LRSchedule, build_optimizer, set_lr


class NonFiniteLoss(StepFailed):
    """Training produced a NaN/inf loss or gradient; the last good checkpoint was kept."""


def step_verdict(loss_finite: bool, grads_finite: bool, scaler_enabled: bool) -> str:
    """What one optimizer step does with its (all-rank) finiteness checks.

    "fatal": stop training (NonFiniteLoss). A non-finite LOSS is always fatal; without a grad
        scaler a non-finite gradient is too (fp32/bf16 gradients have no reason to overflow).
    "skip": fp16 with GradScaler and an inf/nan gradient after unscaling: routine overflow of the
        scaled gradients; `scaler.step` skips the update and `scaler.update` lowers the scale
        (counted in the history's `skipped_steps`).
    "step": apply the update.
    """
    if not loss_finite:
        return "fatal"
    if grads_finite:
        return "step"
    return "skip" if scaler_enabled else "fatal"


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The fp16 grad scaler (torch's defaults: initial scale 2**16, halved on overflow, doubled
    after 2000 clean steps); None for fp32/bf16."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


@dataclass
class StepInfo:
    """What the per-step hook sees (tests use it to stop a run or to corrupt weights)."""

    step: int
    loss: float
    lm_loss: float
    model: HRMAct


@dataclass
class PhaseResult:
    out_dir: Path
    history: list[dict]
    summary: dict
    checkpoint: Path | None
    step_losses: list[float] = field(default_factory=list)
    """Loss of every optimizer step run in this call (for resume tests and plots)."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("train.device is cuda but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def effective_model_config(model_cfg: ModelConfig, phase: PhaseConfig) -> ModelConfig:
    """The model config with the phase's overrides applied (stored in its checkpoints)."""
    updates = {}
    if phase.L_cycles is not None:
        updates["L_cycles"] = phase.L_cycles
    if phase.halt_exploration_prob is not None:
        updates["halt_exploration_prob"] = phase.halt_exploration_prob
    return model_cfg.model_copy(update=updates)


def compile_reasoning_modules(model: HRMAct) -> None:
    """`model.compile`: torch.compile the H and L modules in place (nn.Module.compile keeps the
    state-dict keys, so checkpoints stay plain). They hold nearly all the compute and are free of
    Python control flow; inductor fuses their elementwise work (RMSNorm, RoPE, SwiGLU, residual
    adds) that otherwise costs a memory round trip per op."""
    core = model.core
    for module in {id(m): m for m in (core.H, core.L)}.values():
        module.compile()


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(explore_gen: torch.Generator) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "explore": explore_gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, explore_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    explore_gen.set_state(state["explore"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


OPERATIONAL_TRAIN_KEYS = frozenset({"device", "num_threads", "keep_checkpoints",
                                    "checkpoint_every_steps"})
"""Train settings that do not change what is computed: a resumed run may change them."""


def resume_config_changes(recorded: dict | None, cfg, phase_idx: int) -> list[str]:
    """`key: old -> new` for every train setting (and this phase's settings) that differs
    between a checkpoint's `train_config` and `cfg`; other phases are not compared."""
    if recorded is None:
        return ["the checkpoint records no train config"]
    now = cfg.model_dump(mode="json")
    out = [f"train.{k}: {recorded.get(k)!r} -> {v!r}" for k, v in now.items()
           if k not in OPERATIONAL_TRAIN_KEYS and k != "phases" and recorded.get(k) != v]
    old_phases = recorded.get("phases") or []
    old = old_phases[phase_idx] if phase_idx < len(old_phases) else {}
    new = now["phases"][phase_idx]
    out += [f"phase.{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    return out


def _phase_index(params: Params, name: str) -> tuple[int, PhaseConfig]:
    for i, phase in enumerate(params.train.phases):
        if phase.name == name:
            return i, phase
    raise InputError(f"train.phases: no phase named {name!r} (have {[p.name for p in params.train.phases]})")


def evenly_spaced(arrays: TrainArrays, max_rows: int | None) -> TrainArrays:
    """At most `max_rows` stored rows spread evenly over the split (all when None or fewer)."""
    n = len(arrays.inputs)
    if max_rows is None or n <= max_rows:
        return arrays
    idx = np.linspace(0, n - 1, max_rows).round().astype(np.int64)
    return TrainArrays(arrays.inputs[idx], arrays.labels[idx], arrays.inserts[idx], arrays.vocab_size)


@torch.no_grad()
def evaluate_arrays(model: HRMAct, arrays: TrainArrays, batch_size: int, loss_kind: str,
                    prefix: str = "train_eval_", max_rows: int | None = None) -> dict:
    """Clean evaluation on `arrays`: eval mode, no gradients, every row runs halt_max_steps
    segments from a fresh carry (the semantics of `run_inference` without Q halting), the
    token head on the labelled edits (teacher forcing, as in training).

    Returns `{prefix}lm_loss` (the training loss's edit part: mean per labelled position),
    `{prefix}token_accuracy` (share of labelled positions whose output is right),
    `{prefix}edit_accuracy` (the same over edited positions only: copying scores 0) and
    `{prefix}exact_accuracy` (rows with every position right);
    `max_rows` evaluates only the first N rows. Stored rows, never augmented ones. Draws no
    random numbers; the model's train/eval mode is restored.
    """
    net = model
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    tok_correct = tok_total = seq_correct = edit_correct = edit_total = 0
    loss_sum = 0.0
    rows = len(arrays.inputs) if max_rows is None else min(max_rows, len(arrays.inputs))
    try:
        for start in range(0, rows, batch_size):
            stop = min(start + batch_size, rows)
            carry = net.initial_carry(stop - start, device)
            carry.inputs = torch.from_numpy(arrays.inputs[start:stop]).to(device=device, dtype=torch.int32)
            carry.labels = torch.from_numpy(arrays.labels[start:stop]).to(device=device, dtype=torch.int64)
            carry.inserts = torch.from_numpy(arrays.inserts[start:stop]).to(device=device, dtype=torch.int64)
            carry.valid = torch.ones(stop - start, dtype=torch.bool, device=device)
            carry.halted.zero_()
            for _ in range(net.cfg.halt_max_steps):
                out = net(carry, halt_on_q=False, labels_only=True)
                carry = out.carry
            parts = act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue, None,
                               own_tokens=out.own_tokens, insert_logits=out.insert_logits,
                               insert_labels=out.insert_labels,
                               slot_logits=out.slot_logits, slot_labels=out.slot_labels,
                               slot_rows=out.slot_rows, slot_cols=out.slot_cols, q_weight=0.0,
                               kind=loss_kind, lm_denominator=1.0)
            loss_sum += float(parts.lm)
            tok_correct += int(parts.token_correct.sum())
            tok_total += int(parts.label_mask.sum())
            edit_correct += int((parts.token_correct & parts.edited_mask).sum())
            edit_total += int(parts.edited_mask.sum())
            seq_correct += int(parts.seq_correct.sum())
    finally:
        net.train(was_training)
    return {
        f"{prefix}lm_loss": loss_sum / max(tok_total, 1),
        f"{prefix}token_accuracy": tok_correct / max(tok_total, 1),
        f"{prefix}edit_accuracy": edit_correct / max(edit_total, 1),
        f"{prefix}exact_accuracy": seq_correct / max(rows, 1),
    }


def train_phase(
    params: Params,
    phase_name: str,
    arrays: TrainArrays,
    out_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    resume: str = "none",
    tokenizer_dir: str | Path | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    final_eval: bool = True,
    progress: bool = True,
    val_arrays: TrainArrays | None = None,
    allow_config_change: bool = False,
) -> PhaseResult:
    """Train one phase of `params.train.phases` on `arrays`; writes under `out_dir`.

    resume_from: the previous phase's checkpoint (file or dir): weights and the global epoch
        counter continue from it; optimizer, schedule and ACT carry start fresh (a new phase has
        a new learning rate; the carry is reset because the phase may change data order).
    resume: "none", "auto" (continue THIS phase from the newest valid checkpoint in
        out_dir/checkpoints, skipping corrupt ones with a warning: crash recovery; start normally
        if there is none) or a path (a file, or a dir whose newest checkpoint must verify).
        The checkpoint's train settings must equal this run's (`resume_config_changes`) unless
        `allow_config_change`: a resumed run is meant to be the run that was interrupted.
    resume_from likewise takes the newest checkpoint of a dir and refuses it when corrupt.
    tokenizer_dir: its fingerprint (`hrm.tokenizer.tokenizer_fingerprint`) is stored in every
        checkpoint; a checkpoint resumed or continued from must carry the same one.
    val_arrays: the val split; every `train.val_every_epochs` global epochs and at the phase's
        last epoch, rank 0 evaluates its first `train.val_max_rows` rows (the clean evaluation of
        the end-of-phase train eval, EMA weights when on) into the epoch's `val_*` history columns.
        The pass runs in eval mode without gradients and restores every RNG state, so training
        (weights, data order, exact resume) is the same with it on or off; the other ranks go
        straight on and wait for rank 0 at the epoch-end checkpoint. None: no val pass.
    """
    cfg = params.train
    phase_idx, phase = _phase_index(params, phase_name)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    device = resolve_device(cfg.device)
    ctx: DistContext = init_distributed(device.type)
    if ctx.rank == 0:
        for orphan in ckpt.remove_orphans(ckpt_dir):  # a write killed mid-way (a DVC output dir)
            warnings.warn(f"removed a temp file a killed checkpoint write left: {orphan}", stacklevel=2)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cpu":
        keep_freed_memory()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    if cfg.batch_size % ctx.world:
        raise InputError(f"train.batch_size={cfg.batch_size} must be divisible by the world size {ctx.world}")
    local_batch = cfg.batch_size // ctx.world
    seed = cfg.seed + 1000 * phase_idx
    _seed_everything(seed)

    model_cfg = effective_model_config(params.model, phase)
    model = build_model(model_cfg, arrays.vocab_size, arrays.seq_len, device, arrays.slots, arrays.max_insertions)
    optimizer = build_optimizer(model, cfg, phase.lr)
    schedule = LRSchedule(phase.lr, phase.warmup_steps, cfg.min_lr_ratio)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    precision = resolve_precision(cfg.precision, device)
    scaler = make_grad_scaler(precision, device)
    explore_gen = torch.Generator().manual_seed(seed * 7919 + ctx.rank)
    feeder = RowFeeder(arrays, phase, seed, ctx.rank, ctx.world)
    carry = model.initial_carry(local_batch, device)
    acc = EpochAccumulator()
    history: list[dict] = []
    step = 0
    skipped = 0  # fp16 steps GradScaler skipped (overflow) in this phase
    consumed = 0  # examples loaded into rows this phase (this rank)
    start_epoch = 0  # global epoch counter before this phase
    elapsed_before = 0.0

    tok_fp = tokenizer_fingerprint(tokenizer_dir) if tokenizer_dir is not None else None

    def check_tokenizer(state: dict, path: Path, what: str) -> None:
        recorded = state.get("tokenizer_fingerprint")
        if recorded != tok_fp:
            raise InputError(f"{what} was trained with tokenizer fingerprint {recorded or '(none)'}, "
                             f"this run uses {tok_fp or '(none)'} (tokenizer "
                             f"{Path(tokenizer_dir) / 'tokenizer.json' if tokenizer_dir is not None else 'not given'}"
                             "): the token ids would mean different things", path=str(path))

    # ---- resume --------------------------------------------------------------------------
    own = None
    if resume == "auto":
        own = ckpt.latest_valid(ckpt_dir)
    elif resume not in ("none", "", None):
        own = ckpt.resolve_checkpoint(resume)
    if own is not None:
        state = ckpt.load_checkpoint(own, map_location=device)
        if state["model_config"] != model_cfg.model_dump(mode="json") or state.get("phase") != phase.name:
            raise InputError("checkpoint was written with a different model config or phase; "
                             "remove it or train into a new --out", path=str(own))
        changes = resume_config_changes(state.get("train_config"), cfg, phase_idx)
        if changes and not allow_config_change:
            raise InputError("the checkpoint to resume was written with other train settings ("
                             + "; ".join(changes) + "): resuming would not continue that run. "
                             "Train into a new --out, or pass --allow-config-change", path=str(own))
        check_tokenizer(state, own, "the checkpoint to resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        step, start_epoch, history = int(state["step"]), int(state["start_epoch"]), list(state["history"])
        skipped = int(state.get("skipped_steps", 0))
        elapsed_before = float(state.get("wall_time_s", 0.0))
        ranks = state["rank_states"]
        if len(ranks) == ctx.world:
            rs = ranks[ctx.rank]
            feeder.load_state_dict(rs["feeder"])
            carry = ActCarry.from_state_dict(rs["carry"]).to(device)
            acc.load_state_dict(rs["accumulator"])
            consumed = int(rs["consumed"])
            _set_rng_state(rs["rng"], explore_gen)
        else:
            # Documented reset: a different world size cannot reuse per-rank streams and carries;
            # restart the current epoch's stream with an empty carry.
            warnings.warn(f"checkpoint has {len(ranks)} rank states, running with {ctx.world}: "
                          "the ACT carry and the epoch's data stream are reset", stacklevel=2)
            feeder.load_state_dict({"epoch": ranks[0]["feeder"]["epoch"], "position": 0})
        if ctx.is_main:
            print(f"resumed phase {phase.name} from {own} at step {step}")
    elif resume_from is not None:
        prev_path = ckpt.resolve_checkpoint(resume_from)
        prev = ckpt.load_checkpoint(prev_path, map_location=device)
        shape = (arrays.vocab_size, arrays.seq_len, arrays.slots, arrays.max_insertions)
        prev_shape = (int(prev["vocab_size"]), int(prev["seq_len"]), int(prev.get("slots", 0)),
                      int(prev.get("max_insertions", 0)))
        if prev_shape != shape:
            raise InputError(f"previous phase was trained with vocab / seq_len / slots / max_insertions "
                             f"{prev_shape}, these sequences have {shape}", path=str(prev_path))
        check_tokenizer(prev, prev_path, "the previous phase's checkpoint")
        model.load_state_dict(prev["model"])
        if ema is not None and prev.get("ema") is not None:
            ema.load_state_dict(prev["ema"])
        start_epoch = int(prev["global_epoch"])
    version = ckpt.code_version() if ctx.is_main else None

    # ---- wrap -----------------------------------------------------------------------------
    net: torch.nn.Module = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if model_cfg.compile:
        compile_reasoning_modules(model)
    model.train()
    planned = phase.epochs * feeder.epoch_size
    last_ckpt: Path | None = ckpt.latest_valid(ckpt_dir) if own is not None else None
    step_losses: list[float] = []
    t_start = time.perf_counter()
    epoch_t0 = time.perf_counter()
    ema_model: HRMAct | None = None

    def eval_weights() -> HRMAct:
        """The weights evaluated: the EMA's when on (one model, built once), else the model's."""
        nonlocal ema_model
        if ema is None:
            return model
        if ema_model is None:
            ema_model = build_model(model_cfg, arrays.vocab_size, arrays.seq_len, device, arrays.slots,
                                    arrays.max_insertions)
        ema_model.load_state_dict(ema.state_dict())
        return ema_model

    def validate() -> dict:
        """The val pass (rank 0); every RNG state is put back as it was."""
        rng = _rng_state(explore_gen)
        try:
            return evaluate_arrays(eval_weights(), val_arrays, local_batch * ctx.world, model_cfg.loss,
                                   prefix="val_", max_rows=cfg.val_max_rows)
        finally:
            _set_rng_state(rng, explore_gen)

    def save() -> Path | None:
        """Gather per-rank state and write a checkpoint from rank 0."""
        nonlocal last_ckpt
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise NonFiniteLoss(f"non-finite weights at phase {phase.name}, step {step}: checkpoint not "
                                f"written, last good checkpoint kept: {last_ckpt}")
        rank_state = {
            "feeder": feeder.state_dict(),
            "carry": carry.state_dict(),
            "accumulator": acc.state_dict(),
            "consumed": consumed,
            "rng": _rng_state(explore_gen),
        }
        ranks = ctx.gather_objects(rank_state)
        if ctx.is_main:
            state = {
                "phase": phase.name,
                "step": step,
                "skipped_steps": skipped,
                "start_epoch": start_epoch,
                "global_epoch": start_epoch + feeder.epoch,
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "schedule": {"peak": schedule.peak, "warmup_steps": schedule.warmup_steps,
                             "min_ratio": schedule.min_ratio, "consumed": consumed, "planned": planned},
                "rank_states": ranks,
                "history": history,
                "wall_time_s": elapsed_before + time.perf_counter() - t_start,
                "model_config": model_cfg.model_dump(mode="json"),
                "train_config": cfg.model_dump(mode="json"),
                "vocab_size": arrays.vocab_size,
                "seq_len": arrays.seq_len,
                "slots": arrays.slots,
                "max_insertions": arrays.max_insertions,
                "tokenizer_fingerprint": tok_fp,
                "code_version": version,
            }
            last_ckpt = ckpt.save_checkpoint(ckpt_dir, state, keep=cfg.keep_checkpoints)
        ctx.barrier()
        return last_ckpt

    bar = tqdm(total=phase.epochs * feeder.epoch_size, initial=feeder.epoch * feeder.epoch_size + feeder.position,
               desc=f"train:{phase.name}", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    exploration = model_cfg.halt_exploration_prob
    while feeder.epoch < phase.epochs:
        loaded = fill_halted_rows(carry, feeder, arrays, exploration, model_cfg.halt_max_steps, explore_gen)
        consumed += loaded
        bar.update(loaded)
        lr = schedule.lr(step, consumed / max(planned, 1))
        set_lr(optimizer, lr)
        # Global denominators: DDP averages gradients, so each rank divides by global / world.
        counts = ctx.all_sum(torch.tensor([float((carry.labels != -100)[carry.valid].sum()),
                                           float(carry.valid.sum())], dtype=torch.float64))
        lm_den = max(float(counts[0]), 1.0) / ctx.world
        row_den = max(float(counts[1]), 1.0) / ctx.world
        with autocast_context(precision, device):
            out = net(carry, L_cycles=model_cfg.L_cycles, labels_only=True)
        parts = act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue, out.target_q_continue,
                           own_tokens=out.own_tokens, insert_logits=out.insert_logits,
                           insert_labels=out.insert_labels,
                           slot_logits=out.slot_logits, slot_labels=out.slot_labels,
                           slot_rows=out.slot_rows, slot_cols=out.slot_cols, keep_scale=out.keep_scale,
                           q_weight=phase.q_loss_weight, kind=model_cfg.loss, edit_weight=cfg.edit_weight,
                           lm_denominator=lm_den, row_denominator=row_den, pointer_weight=cfg.pointer_weight)
        if scaler is not None:
            scaler.scale(parts.total).backward()
            scaler.unscale_(optimizer)
        else:
            parts.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # Losses are local partial sums; the global value is their sum over ranks.
        reduced = ctx.all_sum(torch.stack([parts.total.detach(), parts.lm.detach(), parts.q_halt.detach(),
                                           parts.q_continue.detach()]).double().cpu() / ctx.world)
        # One collective for both checks: 2 = loss and gradients finite, 1 = loss only, 0 = loss not.
        loss_ok, grads_ok = bool(torch.isfinite(reduced).all()), bool(torch.isfinite(grad_norm))
        finite = ctx.all_min(float(loss_ok) * (1.0 + float(grads_ok)))
        verdict = step_verdict(finite >= 1.0, finite >= 2.0, scaler is not None)
        if verdict == "fatal":
            bar.close()
            where = f"phase {phase.name}, step {step + 1}, epoch {start_epoch + feeder.epoch + 1}"
            kept = f"last good checkpoint kept: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
            raise NonFiniteLoss(f"non-finite loss or gradient at {where} (loss={reduced[0].item()}, "
                                f"grad_norm={float(grad_norm)}); training stopped, {kept}")
        if scaler is not None:
            # On overflow (verdict "skip") scaler.step leaves the weights and optimizer state alone
            # (unscale_ recorded the inf) and update() halves the scale.
            scaler.step(optimizer)
            scaler.update()
            if verdict == "skip":
                skipped += 1
                acc.add("skipped_steps", 1.0 / ctx.world)
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        step += 1
        step_losses.append(float(reduced[0]))

        # ---- bookkeeping on rows that halted in this step -------------------------------
        carry = out.carry
        carry.halted |= ~carry.valid
        with torch.no_grad():
            done = carry.halted & carry.valid
            acc.add("loss", float(reduced[0]) / ctx.world)  # summed again over ranks at epoch end
            acc.add("lm_loss", float(reduced[1]) / ctx.world)
            acc.add("q_halt_loss", float(reduced[2]) / ctx.world)
            acc.add("q_continue_loss", float(reduced[3]) / ctx.world)
            acc.add("steps", 1.0 / ctx.world)
            weight = parts.count_weight[done]
            acc.add("tok_correct", float((parts.token_correct[done] * weight).sum()))
            acc.add("tok_total", float(weight.sum()))
            edited = parts.edited_mask[done]
            acc.add("edit_correct", float((parts.token_correct[done] & edited).sum()))
            acc.add("edit_total", float(edited.sum()))
            acc.add("seq_correct", float(parts.seq_correct[done].sum()))
            acc.add("seq_total", float(done.sum()))
            acc.add("q_correct", float(((out.q_halt[done] > 0) == parts.seq_correct[done]).sum()))
            acc.add("act_steps", float(out.steps[done].sum()))
            acc.add("tokens", float(carry.valid.sum()) * arrays.seq_len)
        if ctx.is_main and step % 5 == 0:
            bar.set_postfix(loss=f"{float(reduced[0]):.3f}", lm=f"{float(reduced[1]):.3f}")
        if on_step is not None:
            on_step(StepInfo(step, float(reduced[0]), float(reduced[1]), model))
        periodic = bool(cfg.checkpoint_every_steps) and step % cfg.checkpoint_every_steps == 0
        if ctx.all_min(float(feeder.exhausted)) >= 1.0:  # every rank finished its epoch stream
            sums = ctx.all_sum(acc.sums)
            epoch_time = time.perf_counter() - epoch_t0
            row = EpochAccumulator.row(
                sums, phase=phase.name, epoch=start_epoch + feeder.epoch + 1, step=step, lr=lr,
                wall_time_s=round(elapsed_before + time.perf_counter() - t_start, 3),
            )
            row["tokens_per_s"] = row.pop("tokens") / max(epoch_time, 1e-9)
            global_epoch = start_epoch + feeder.epoch + 1
            if ctx.is_main and val_arrays is not None and cfg.val_every_epochs and (
                    global_epoch % cfg.val_every_epochs == 0 or feeder.epoch + 1 == phase.epochs):
                row.update(validate())
            history.append(row)
            acc = EpochAccumulator()
            feeder.next_epoch()
            epoch_t0 = time.perf_counter()
            if ctx.is_main:
                write_history(out_dir, history)
                postfix = {"loss": f"{row['loss']:.3f}", "tok_acc": f"{row['token_accuracy'] or 0:.3f}",
                           "tok_s": f"{row['tokens_per_s']:.0f}"}
                if "val_lm_loss" in row:
                    postfix.update(val_lm=f"{row['val_lm_loss']:.3f}", val_acc=f"{row['val_token_accuracy']:.3f}")
                bar.set_postfix(postfix)
                if on_epoch is not None:
                    on_epoch(row)
            save()
        elif periodic:
            # Saved after the epoch-end check so that a resumed run continues at the next fill.
            save()
    bar.close()

    summary = dict(history[-1]) if history else {}
    if final_eval and ctx.is_main:
        summary.update(evaluate_arrays(eval_weights(), evenly_spaced(arrays, cfg.train_eval_max_rows),
                                       local_batch * ctx.world, model_cfg.loss))
    if ctx.is_main:
        summary.update(phase_steps=step, phase_skipped_steps=skipped, world_size=ctx.world,
                       precision=precision, checkpoint=str(last_ckpt) if last_ckpt else None)
        write_history(out_dir, history)
        write_summary(out_dir, summary)
    return PhaseResult(out_dir, history, summary, last_ckpt, step_losses)
