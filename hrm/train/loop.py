"""One training phase: deep-supervision ACT training with checkpoints, history and exact resume.

`train_phase` is a pure function of its inputs (params, phase name, arrays, directories) to files
under `out_dir`: checkpoints/, history.csv, history.json, summary.json. It runs unchanged under
`torchrun` (DDP, rank-0 writes). MLflow logging lives in hrm.train.run (the file-level step).
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hrm.config import ModelConfig, Params, PhaseConfig, TrainConfig
from hrm.errors import InputError, StepFailed
from hrm.model import HRMAct, build_model
from hrm.model.act import ActCarry
from hrm.model.losses import act_losses
from hrm.tokenizer import tokenizer_fingerprint
from hrm.train import checkpoint as ckpt
from hrm.train.data import RowFeeder, TrainArrays, fill_halted_rows
from hrm.train.device import (
    autocast_context,
    keep_freed_memory,
    make_grad_scaler,
    resolve_device,
    resolve_precision,
)
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
                                    "checkpoint_every_steps", "reverse_control"})
"""Train settings that do not change what is computed: a resumed run may change them."""


def resume_config_changes(recorded: dict | None, cfg, phase_idx: int) -> list[str]:
    """`key: old -> new` for every train setting (and this phase's settings) that differs
    between a checkpoint's `train_config` and `cfg`; other phases are not compared."""
    if recorded is None:
        return ["the checkpoint records no train config"]
    recorded = ckpt.recorded_train_config(recorded)  # settings added since: their defaults
    now = cfg.model_dump(mode="json")
    out = [f"train.{k}: {recorded.get(k)!r} -> {v!r}" for k, v in now.items()
           if k not in OPERATIONAL_TRAIN_KEYS and k != "phases" and recorded.get(k) != v]
    old_phases = recorded.get("phases") or []
    old = old_phases[phase_idx] if phase_idx < len(old_phases) else {}
    new = now["phases"][phase_idx]
    out += [f"phase.{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    return out


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
    random numbers; the model's train/eval mode is restored. With `mask_padding` the rows go in
    order of length, so each batch is trimmed to about its rows' width (the sums are the same).
    """
    net = model
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    tok_correct = tok_total = seq_correct = edit_correct = edit_total = 0
    loss_sum = 0.0
    rows = len(arrays.inputs) if max_rows is None else min(max_rows, len(arrays.inputs))
    order = np.arange(rows)
    if net.cfg.mask_padding:
        order = np.argsort(arrays.row_lengths()[:rows], kind="stable")
    try:
        for start in range(0, rows, batch_size):
            stop = min(start + batch_size, rows)
            batch = order[start:stop]
            carry = net.initial_carry(stop - start, device)
            carry.inputs = torch.from_numpy(arrays.inputs[batch]).to(device=device, dtype=torch.int32)
            carry.labels = torch.from_numpy(arrays.labels[batch]).to(device=device, dtype=torch.int64)
            carry.inserts = torch.from_numpy(arrays.inserts[batch]).to(device=device, dtype=torch.int64)
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


@dataclass
class Phase:
    """What one phase trains, where and how: fixed once `setup_phase` has built it."""

    params: Params
    phase: PhaseConfig
    phase_idx: int
    model_cfg: ModelConfig
    arrays: TrainArrays
    out_dir: Path
    device: torch.device
    ctx: DistContext
    precision: str
    local_batch: int
    tokenizer_dir: Path | None
    tok_fp: str | None

    @property
    def cfg(self) -> TrainConfig:
        return self.params.train

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def global_batch(self) -> int:
        return self.local_batch * self.ctx.world

    def check_tokenizer(self, state: dict, path: Path, what: str) -> None:
        """Refuse a checkpoint trained with another tokenizer (the token ids would differ)."""
        recorded = state.get("tokenizer_fingerprint")
        if recorded != self.tok_fp:
            where = (Path(self.tokenizer_dir) / "tokenizer.json" if self.tokenizer_dir is not None
                     else "not given")
            raise InputError(f"{what} was trained with tokenizer fingerprint {recorded or '(none)'}, "
                             f"this run uses {self.tok_fp or '(none)'} (tokenizer {where}): the "
                             "token ids would mean different things", path=str(path))


@dataclass
class PhaseState:
    """Everything that changes while a phase trains; `state_dict` is its checkpoint and
    `load_state_dict` resumes it exactly (per rank: data stream, ACT carry, epoch sums, RNGs)."""

    model: HRMAct
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: EMA | None
    scaler: torch.amp.GradScaler | None
    explore_gen: torch.Generator
    feeder: RowFeeder
    carry: ActCarry
    acc: EpochAccumulator
    step: int = 0
    skipped: int = 0
    """fp16 steps GradScaler skipped (overflow) in this phase."""
    consumed: int = 0
    """Examples loaded into rows this phase (this rank)."""
    start_epoch: int = 0
    """Global epoch counter before this phase."""
    elapsed_before: float = 0.0
    """Wall time of the runs this one resumed."""
    history: list[dict] = field(default_factory=list)
    last_ckpt: Path | None = None
    step_losses: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ema_model: HRMAct | None = None

    def wall_time(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def rank_state_dict(self) -> dict:
        return {"feeder": self.feeder.state_dict(), "carry": self.carry.state_dict(),
                "accumulator": self.acc.state_dict(), "consumed": self.consumed,
                "rng": _rng_state(self.explore_gen)}

    def load_rank_state_dict(self, rank_state: dict, device: torch.device) -> None:
        self.feeder.load_state_dict(rank_state["feeder"])
        self.carry = ActCarry.from_state_dict(rank_state["carry"]).to(device)
        self.acc.load_state_dict(rank_state["accumulator"])
        self.consumed = int(rank_state["consumed"])
        _set_rng_state(rank_state["rng"], self.explore_gen)

    def state_dict(self, ph: Phase, ranks: list[dict], version: str | None) -> dict:
        """The checkpoint (rank 0 writes it; `ranks` are every rank's `rank_state_dict`)."""
        arrays = ph.arrays
        return {
            "phase": ph.phase.name,
            "step": self.step,
            "skipped_steps": self.skipped,
            "start_epoch": self.start_epoch,
            "global_epoch": self.start_epoch + self.feeder.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "schedule": {"peak": self.schedule.peak, "warmup_steps": self.schedule.warmup_steps,
                         "min_ratio": self.schedule.min_ratio, "consumed": self.consumed,
                         "planned": planned_examples(ph, self.feeder)},
            "rank_states": ranks,
            "history": self.history,
            "wall_time_s": self.wall_time(),
            "model_config": ph.model_cfg.model_dump(mode="json"),
            "train_config": ph.cfg.model_dump(mode="json"),
            "vocab_size": arrays.vocab_size,
            "seq_len": arrays.seq_len,
            "slots": arrays.slots,
            "max_insertions": arrays.max_insertions,
            "tokenizer_fingerprint": ph.tok_fp,
            "code_version": version,
        }

    def load_state_dict(self, state: dict, ph: Phase) -> None:
        """Continue THIS phase from its checkpoint `state`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.start_epoch = int(state["step"]), int(state["start_epoch"])
        self.history = list(state["history"])
        self.skipped = int(state.get("skipped_steps", 0))
        self.elapsed_before = float(state.get("wall_time_s", 0.0))
        ranks = state["rank_states"]
        if len(ranks) == ph.ctx.world:
            self.load_rank_state_dict(ranks[ph.ctx.rank], ph.device)
        else:
            # Documented reset: a different world size cannot reuse per-rank streams and carries;
            # restart the current epoch's stream with an empty carry.
            warnings.warn(f"checkpoint has {len(ranks)} rank states, running with {ph.ctx.world}: "
                          "the ACT carry and the epoch's data stream are reset", stacklevel=3)
            self.feeder.load_state_dict({"epoch": ranks[0]["feeder"]["epoch"], "position": 0})

    def eval_weights(self, ph: Phase) -> HRMAct:
        """The weights evaluated: the EMA's when on (one model, built once), else the model's."""
        if self.ema is None:
            return self.model
        if self.ema_model is None:
            a = ph.arrays
            self.ema_model = build_model(ph.model_cfg, a.vocab_size, a.seq_len, ph.device, a.slots,
                                         a.max_insertions)
        self.ema_model.load_state_dict(self.ema.state_dict())
        return self.ema_model


def planned_examples(ph: Phase, feeder: RowFeeder) -> int:
    """Examples this rank loads in the whole phase (the schedule's horizon)."""
    return ph.phase.epochs * feeder.epoch_size


def setup_phase(params: Params, phase_name: str, arrays: TrainArrays, out_dir: str | Path,
                tokenizer_dir: str | Path | None) -> tuple[Phase, PhaseState]:
    """Device, processes, seeds and a fresh model, optimizer and data stream for the phase."""
    cfg = params.train
    phase_idx, phase = cfg.phase_index(phase_name)
    device = resolve_device(cfg.device)
    ctx: DistContext = init_distributed(device.type)
    out_dir = Path(out_dir)
    if ctx.rank == 0:
        for orphan in ckpt.remove_orphans(out_dir / "checkpoints"):  # a killed write (a DVC out)
            warnings.warn(f"removed a temp file a killed checkpoint write left: {orphan}", stacklevel=3)
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
    seed = cfg.seed + 1000 * phase_idx
    _seed_everything(seed)
    model_cfg = effective_model_config(params.model, phase)
    precision = resolve_precision(cfg.precision, device)
    ph = Phase(params, phase, phase_idx, model_cfg, arrays, out_dir, device, ctx, precision,
               cfg.batch_size // ctx.world, Path(tokenizer_dir) if tokenizer_dir is not None else None,
               tokenizer_fingerprint(tokenizer_dir) if tokenizer_dir is not None else None)
    model = build_model(model_cfg, arrays.vocab_size, arrays.seq_len, device, arrays.slots, arrays.max_insertions)
    st = PhaseState(
        model=model,
        optimizer=build_optimizer(model, cfg, phase.lr),
        schedule=LRSchedule(phase.lr, phase.warmup_steps, cfg.min_lr_ratio),
        ema=EMA(model, cfg.ema_decay) if cfg.ema_decay else None,
        scaler=make_grad_scaler(precision, device),
        explore_gen=torch.Generator().manual_seed(seed * 7919 + ctx.rank),
        feeder=RowFeeder(arrays, phase, seed, ctx.rank, ctx.world),
        carry=model.initial_carry(ph.local_batch, device),
        acc=EpochAccumulator(),
    )
    if arrays.negatives is not None:  # the listwise loss (off by default: not imported then)
        from hrm.train.negatives import empty_negatives

        st.carry.negatives = empty_negatives(ph.local_batch, cfg.rank_negatives, device)
    return ph, st


def resume_phase(ph: Phase, st: PhaseState, resume: str, resume_from: str | Path | None,
                 allow_config_change: bool) -> Path | None:
    """Continue this phase from its own checkpoint (`resume`), or start it from the previous
    phase's weights (`resume_from`); returns the own checkpoint resumed, if any."""
    own = None
    if resume == "auto":
        own = ckpt.latest_valid(ph.ckpt_dir)
    elif resume not in ("none", "", None):
        own = ckpt.resolve_checkpoint(resume)
    if own is not None:
        state = ckpt.load_checkpoint(own, map_location=ph.device)
        same_model = ckpt.recorded_model_config(state["model_config"]) == ph.model_cfg.model_dump(mode="json")
        if not same_model or state.get("phase") != ph.phase.name:
            raise InputError("checkpoint was written with a different model config or phase; "
                             "remove it or train into a new --out", path=str(own))
        changes = resume_config_changes(state.get("train_config"), ph.cfg, ph.phase_idx)
        if changes and not allow_config_change:
            raise InputError("the checkpoint to resume was written with other train settings ("
                             + "; ".join(changes) + "): resuming would not continue that run. "
                             "Train into a new --out, or pass --allow-config-change", path=str(own))
        ph.check_tokenizer(state, own, "the checkpoint to resume")
        st.load_state_dict(state, ph)
        if ph.ctx.is_main:
            print(f"resumed phase {ph.phase.name} from {own} at step {st.step}")
    elif resume_from is not None:
        prev_path = ckpt.resolve_checkpoint(resume_from)
        prev = ckpt.load_checkpoint(prev_path, map_location=ph.device)
        a = ph.arrays
        shape = (a.vocab_size, a.seq_len, a.slots, a.max_insertions)
        prev_shape = (int(prev["vocab_size"]), int(prev["seq_len"]), int(prev.get("slots", 0)),
                      int(prev.get("max_insertions", 0)))
        if prev_shape != shape:
            raise InputError(f"previous phase was trained with vocab / seq_len / slots / max_insertions "
                             f"{prev_shape}, these sequences have {shape}", path=str(prev_path))
        ph.check_tokenizer(prev, prev_path, "the previous phase's checkpoint")
        st.model.load_state_dict(prev["model"])
        if st.ema is not None and prev.get("ema") is not None:
            st.ema.load_state_dict(prev["ema"])
        st.start_epoch = int(prev["global_epoch"])
    return own


def save_checkpoint(ph: Phase, st: PhaseState, version: str | None) -> Path | None:
    """Gather every rank's state and write a checkpoint from rank 0."""
    if not all(bool(torch.isfinite(p).all()) for p in st.model.parameters()):
        raise NonFiniteLoss(f"non-finite weights at phase {ph.phase.name}, step {st.step}: checkpoint "
                            f"not written, last good checkpoint kept: {st.last_ckpt}")
    ranks = ph.ctx.gather_objects(st.rank_state_dict())
    if ph.ctx.is_main:
        st.last_ckpt = ckpt.save_checkpoint(ph.ckpt_dir, st.state_dict(ph, ranks, version),
                                            keep=ph.cfg.keep_checkpoints)
    ph.ctx.barrier()
    return st.last_ckpt


@dataclass
class StepOut:
    """One optimizer step's results that the epoch bookkeeping reads."""

    out: object
    """The model's `ActOutput` (hrm.model.act)."""
    parts: object
    """The step's `LossParts` (hrm.model.losses)."""
    reduced: torch.Tensor
    """float64 [4]: total, lm, q_halt and q_continue losses summed over ranks."""
    lr: float
    loaded: int
    """Examples loaded into halted rows before the step."""


def lm_denominator(ph: Phase, labelled: float) -> float:
    """This rank's divisor of the edit loss: the step's labelled positions over all ranks / world
    (DDP averages gradients). With length buckets (`phase.bucket_rows`) a batch holds rows of
    about one length, and its own count would weigh a short row's positions about 3x a long
    row's: then it is the count a random batch has on average (global batch x the phase's
    labelled positions per row)."""
    if ph.phase.bucket_rows:
        return max(ph.global_batch * ph.arrays.mean_labelled, 1.0) / ph.ctx.world
    return max(labelled, 1.0) / ph.ctx.world


def train_step(ph: Phase, st: PhaseState, net: torch.nn.Module) -> StepOut:
    """Refill halted rows, one forward/backward over the ACT carry, and the optimizer step
    (skipped on an fp16 overflow; NonFiniteLoss on a non-finite loss)."""
    ctx, cfg, model_cfg = ph.ctx, ph.cfg, ph.model_cfg
    loaded = fill_halted_rows(st.carry, st.feeder, ph.arrays, model_cfg.halt_exploration_prob,
                              model_cfg.halt_max_steps, st.explore_gen)
    st.consumed += loaded
    lr = st.schedule.lr(st.step, st.consumed / max(planned_examples(ph, st.feeder), 1))
    set_lr(st.optimizer, lr)
    carry = st.carry
    # Global denominators: DDP averages gradients, so each rank divides by global / world.
    counts = ctx.all_sum(torch.tensor([float((carry.labels != -100)[carry.valid].sum()),
                                       float(carry.valid.sum())], dtype=torch.float64))
    lm_den = lm_denominator(ph, float(counts[0]))
    row_den = max(float(counts[1]), 1.0) / ctx.world
    with autocast_context(ph.precision, ph.device):
        out = net(carry, L_cycles=model_cfg.L_cycles, labels_only=True)
    parts = act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue, out.target_q_continue,
                       own_tokens=out.own_tokens, insert_logits=out.insert_logits,
                       insert_labels=out.insert_labels,
                       slot_logits=out.slot_logits, slot_labels=out.slot_labels,
                       slot_rows=out.slot_rows, slot_cols=out.slot_cols, keep_scale=out.keep_scale,
                       q_weight=ph.phase.q_loss_weight, kind=model_cfg.loss, edit_weight=cfg.edit_weight,
                       lm_denominator=lm_den, row_denominator=row_den, pointer_weight=cfg.pointer_weight,
                       rank_cols=out.rank_cols, rank_tokens=out.rank_tokens, rank_weight=cfg.rank_weight)
    scaler, optimizer = st.scaler, st.optimizer
    if scaler is not None:
        scaler.scale(parts.total).backward()
        scaler.unscale_(optimizer)
    else:
        parts.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(st.model.parameters(), cfg.grad_clip)
    # Losses are local partial sums; the global value is their sum over ranks.
    reduced = ctx.all_sum(torch.stack([parts.total.detach(), parts.lm.detach(), parts.q_halt.detach(),
                                       parts.q_continue.detach()]).double().cpu() / ctx.world)
    # One collective for both checks: 2 = loss and gradients finite, 1 = loss only, 0 = loss not.
    loss_ok, grads_ok = bool(torch.isfinite(reduced).all()), bool(torch.isfinite(grad_norm))
    finite = ctx.all_min(float(loss_ok) * (1.0 + float(grads_ok)))
    verdict = step_verdict(finite >= 1.0, finite >= 2.0, scaler is not None)
    if verdict == "fatal":
        where = f"phase {ph.phase.name}, step {st.step + 1}, epoch {st.start_epoch + st.feeder.epoch + 1}"
        kept = f"last good checkpoint kept: {st.last_ckpt}" if st.last_ckpt else "no checkpoint was written yet"
        raise NonFiniteLoss(f"non-finite loss or gradient at {where} (loss={reduced[0].item()}, "
                            f"grad_norm={float(grad_norm)}); training stopped, {kept}")
    if scaler is not None:
        # On overflow (verdict "skip") scaler.step leaves the weights and optimizer state alone
        # (unscale_ recorded the inf) and update() halves the scale.
        scaler.step(optimizer)
        scaler.update()
        if verdict == "skip":
            st.skipped += 1
            st.acc.add("skipped_steps", 1.0 / ctx.world)
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if st.ema is not None:
        st.ema.update(st.model)
    st.step += 1
    st.step_losses.append(float(reduced[0]))
    return StepOut(out, parts, reduced, lr, loaded)


def record_step(ph: Phase, st: PhaseState, so: StepOut) -> None:
    """Carry the step's ACT state on and add the rows that halted to the epoch's sums."""
    out, parts, reduced, world = so.out, so.parts, so.reduced, ph.ctx.world
    st.carry = carry = out.carry
    carry.halted |= ~carry.valid
    acc = st.acc
    with torch.no_grad():
        done = carry.halted & carry.valid
        acc.add("loss", float(reduced[0]) / world)  # summed again over ranks at epoch end
        acc.add("lm_loss", float(reduced[1]) / world)
        acc.add("q_halt_loss", float(reduced[2]) / world)
        acc.add("q_continue_loss", float(reduced[3]) / world)
        acc.add("steps", 1.0 / world)
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
        acc.add("tokens", float(carry.valid.sum()) * ph.arrays.seq_len)


def end_epoch(ph: Phase, st: PhaseState, lr: float, epoch_time: float,
              val_arrays: TrainArrays | None) -> dict:
    """The epoch's history row (rank sums, the val pass when due), written; the next epoch's
    stream and sums started. Every rank calls it; rank 0 writes."""
    ctx, cfg = ph.ctx, ph.cfg
    row = EpochAccumulator.row(ctx.all_sum(st.acc.sums), phase=ph.phase.name,
                               epoch=st.start_epoch + st.feeder.epoch + 1, step=st.step, lr=lr,
                               wall_time_s=round(st.wall_time(), 3))
    row["tokens_per_s"] = row.pop("tokens") / max(epoch_time, 1e-9)
    global_epoch = st.start_epoch + st.feeder.epoch + 1
    if ctx.is_main and val_arrays is not None and cfg.val_every_epochs and (
            global_epoch % cfg.val_every_epochs == 0 or st.feeder.epoch + 1 == ph.phase.epochs):
        row.update(validate(ph, st, val_arrays))
    st.history.append(row)
    st.acc = EpochAccumulator()
    st.feeder.next_epoch()
    if ctx.is_main:
        write_history(ph.out_dir, st.history)
    return row


def validate(ph: Phase, st: PhaseState, val_arrays: TrainArrays) -> dict:
    """The val pass (rank 0), in eval mode without gradients; every RNG state is put back."""
    rng = _rng_state(st.explore_gen)
    try:
        return evaluate_arrays(st.eval_weights(ph), val_arrays, ph.global_batch, ph.model_cfg.loss,
                               prefix="val_", max_rows=ph.cfg.val_max_rows)
    finally:
        _set_rng_state(rng, st.explore_gen)


def _epoch_postfix(row: dict) -> dict:
    postfix = {"loss": f"{row['loss']:.3f}", "tok_acc": f"{row['token_accuracy'] or 0:.3f}",
               "tok_s": f"{row['tokens_per_s']:.0f}"}
    if "val_lm_loss" in row:
        postfix.update(val_lm=f"{row['val_lm_loss']:.3f}", val_acc=f"{row['val_token_accuracy']:.3f}")
    return postfix


def finish_phase(ph: Phase, st: PhaseState, final_eval: bool) -> PhaseResult:
    """summary.json (the last epoch's row, the clean end-of-phase train evaluation) and the result."""
    summary = dict(st.history[-1]) if st.history else {}
    if final_eval and ph.ctx.is_main:
        summary.update(evaluate_arrays(st.eval_weights(ph), evenly_spaced(ph.arrays, ph.cfg.train_eval_max_rows),
                                       ph.global_batch, ph.model_cfg.loss))
    if ph.ctx.is_main:
        summary.update(phase_steps=st.step, phase_skipped_steps=st.skipped, world_size=ph.ctx.world,
                       precision=ph.precision, checkpoint=str(st.last_ckpt) if st.last_ckpt else None)
        write_history(ph.out_dir, st.history)
        write_summary(ph.out_dir, summary)
    return PhaseResult(ph.out_dir, st.history, summary, st.last_ckpt, st.step_losses)


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
    ph, st = setup_phase(params, phase_name, arrays, out_dir, tokenizer_dir)
    own = resume_phase(ph, st, resume, resume_from, allow_config_change)
    version = ckpt.code_version() if ph.ctx.is_main else None
    net: torch.nn.Module = st.model
    if ph.ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(st.model, device_ids=[ph.device.index] if ph.device.type == "cuda" else None)
    if ph.model_cfg.compile:
        compile_reasoning_modules(st.model)
    st.model.train()
    st.last_ckpt = ckpt.latest_valid(ph.ckpt_dir) if own is not None else None
    st.started = epoch_t0 = time.perf_counter()
    feeder = st.feeder
    bar = tqdm(total=planned_examples(ph, feeder), initial=feeder.epoch * feeder.epoch_size + feeder.position,
               desc=f"train:{ph.phase.name}", disable=not (progress and ph.ctx.is_main), dynamic_ncols=True)
    try:
        while feeder.epoch < ph.phase.epochs:
            so = train_step(ph, st, net)
            bar.update(so.loaded)
            record_step(ph, st, so)
            if ph.ctx.is_main and st.step % 5 == 0:
                bar.set_postfix(loss=f"{float(so.reduced[0]):.3f}", lm=f"{float(so.reduced[1]):.3f}")
            if on_step is not None:
                on_step(StepInfo(st.step, float(so.reduced[0]), float(so.reduced[1]), st.model))
            every = ph.cfg.checkpoint_every_steps
            if ph.ctx.all_min(float(feeder.exhausted)) >= 1.0:  # every rank finished its stream
                row = end_epoch(ph, st, so.lr, time.perf_counter() - epoch_t0, val_arrays)
                epoch_t0 = time.perf_counter()
                if ph.ctx.is_main:
                    bar.set_postfix(_epoch_postfix(row))
                    if on_epoch is not None:
                        on_epoch(row)
                save_checkpoint(ph, st, version)
            elif every and st.step % every == 0:
                # Saved after the epoch-end check so that a resumed run continues at the next fill.
                save_checkpoint(ph, st, version)
    finally:
        bar.close()
    return finish_phase(ph, st, final_eval)
