"""Training options through `train_phase` on CPU: the precision (`auto` resolution, fp16 +
GradScaler: overflow skips the step, bf16 autocast tracking fp32), adam_atan2, model.compile,
bootstrap_reuse against the recomputed segment, head_positions against every position, EMA."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import pytest
import torch

from hrm.train import NonFiniteLoss, train_phase
from hrm.train import device as train_device
from hrm.train import loop as train_loop
from hrm.train.device import autocast_context, cpu_has_native_bf16, resolve_precision
from hrm.train.loop import step_verdict
from hrm.train.optim import AdamAtan2, build_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import subset  # noqa: E402


def _with(params, model=None, epochs: int | None = None, **train):
    """Params with model/train overrides (precision pinned to fp32 unless given: the tests compare
    numerics, and `auto` is bf16 on a CPU with bf16 matrix units); `epochs`: the foundation's."""
    train.setdefault("precision", "fp32")
    if epochs is not None:
        phases = params.train.phases
        train["phases"] = [phases[0].model_copy(update={"epochs": epochs}), *phases[1:]]
    update = {"train": params.train.model_copy(update=train)}
    if model:
        update["model"] = params.model.model_copy(update=model)
    return params.model_copy(update=update)


def _quiet(fn, *args, **kwargs):
    """Run fn with the loop's fp16/bf16-on-CPU advice warnings silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="train.precision=")
        return fn(*args, **kwargs)


# ---- precision: auto ------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["fp32", "bf16", "fp16"])
def test_resolve_precision_keeps_an_explicit_choice(given):
    for device in ("cpu", "cuda"):
        assert resolve_precision(given, torch.device(device)) == given


def test_resolve_precision_auto(monkeypatch):
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    native = cpu_has_native_bf16()
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    for flag, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(train_device, "cpu_has_native_bf16", lambda flag=flag: flag)
        assert resolve_precision("auto", torch.device("cpu")) == expected
        assert resolve_precision("auto", torch.device("cuda")) == "bf16"
        ctx = autocast_context("auto", torch.device("cpu"))
        if expected == "bf16":
            assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
        else:
            assert not isinstance(ctx, torch.autocast)


def test_auto_precision_trains_as_its_resolution(tiny_params, arrays, tmp_path):
    """`auto` (the params default) trains exactly as the precision it resolves to on this machine
    and records that in the summary."""
    expected = resolve_precision("auto", torch.device("cpu"))
    auto = _quiet(train_phase, _with(tiny_params, precision="auto"), "foundation", arrays, tmp_path / "auto",
                  final_eval=False, progress=False)
    explicit = _quiet(train_phase, _with(tiny_params, precision=expected), "foundation", arrays,
                      tmp_path / "explicit", final_eval=False, progress=False)
    assert auto.summary["precision"] == explicit.summary["precision"] == expected
    assert auto.step_losses == explicit.step_losses


# ---- fp16 and GradScaler -------------------------------------------------------------------

@pytest.mark.parametrize(("loss_ok", "grads_ok", "scaler", "expected"), [
    (True, True, False, "step"), (True, True, True, "step"),
    (True, False, False, "fatal"), (True, False, True, "skip"),
    (False, True, True, "fatal"), (False, False, True, "fatal"), (False, False, False, "fatal"),
])
def test_step_verdict(loss_ok, grads_ok, scaler, expected):
    assert step_verdict(loss_ok, grads_ok, scaler) == expected


def test_fp16_overflow_skips_steps_and_training_goes_on(tiny_params, arrays, tmp_path, monkeypatch):
    """A scaler starting at 2**30 overflows the fp16 backward: those steps leave the weights
    alone, halve the scale and are counted; training does not stop and recovers."""
    scalers = []

    def huge_scaler(precision, device):
        assert precision == "fp16"
        scalers.append(torch.amp.GradScaler(device.type, init_scale=2.0**30))
        return scalers[-1]

    monkeypatch.setattr(train_loop, "make_grad_scaler", huge_scaler)
    seen = []  # (scale after the step, weights after the step)

    def watch(info):
        seen.append((scalers[0].get_scale(), info.model.core.token_head.weight.detach().clone()))

    params = _with(tiny_params, epochs=4, precision="fp16")
    with pytest.warns(UserWarning, match="fp16 on CPU"):
        result = train_phase(params, "foundation", arrays, tmp_path, on_step=watch, final_eval=False,
                             progress=False)
    skipped, steps = result.summary["phase_skipped_steps"], result.summary["phase_steps"]
    assert 0 < skipped < steps, result.summary
    assert sum(r["skipped_steps"] for r in result.history) == skipped
    assert scalers[0].get_scale() == 2.0**30 * 0.5**skipped  # no growth within 2000 steps
    # Overflowed steps (the scale dropped) left the weights unchanged; the others moved them.
    scale0, w0 = 2.0**30, torch.load(result.checkpoint, weights_only=False)["model"]["core.token_head.weight"]
    prev_scale, prev_w = scale0, None
    for i, (scale, w) in enumerate(seen):
        if prev_w is not None:
            assert torch.equal(w, prev_w) == (scale < prev_scale), i
        prev_scale, prev_w = scale, w
    assert torch.equal(seen[-1][1], w0)
    assert all(math.isfinite(x) for x in result.step_losses)
    state = torch.load(result.checkpoint, weights_only=False)
    assert state["skipped_steps"] == skipped and state["scaler"]["scale"] == scalers[0].get_scale()
    assert all(torch.isfinite(p).all() for p in state["model"].values() if p.is_floating_point())


def test_fp16_non_finite_loss_is_still_fatal(tiny_params, arrays, tmp_path):
    def poison(info):
        if info.step == 3:
            with torch.no_grad():
                info.model.core.token_head.weight.fill_(float("nan"))

    params = _with(tiny_params, precision="fp16")
    with pytest.raises(NonFiniteLoss, match="non-finite loss.*step 4"):
        _quiet(train_phase, params, "foundation", arrays, tmp_path, on_step=poison, final_eval=False,
               progress=False)


@pytest.mark.cuda
def test_fp16_overflow_on_cuda_is_skipped(tiny_params, arrays, tmp_path, monkeypatch):
    monkeypatch.setattr(train_loop, "make_grad_scaler",
                        lambda precision, device: torch.amp.GradScaler("cuda", init_scale=2.0**30))
    params = _with(tiny_params, precision="fp16", device="cuda", deterministic=False)
    result = train_phase(params, "foundation", arrays, tmp_path, final_eval=False, progress=False)
    assert 0 < result.summary["phase_skipped_steps"] < result.summary["phase_steps"]
    assert all(math.isfinite(x) for x in result.step_losses)


# ---- bf16, adam_atan2, compile ------------------------------------------------------------

def _curve(params, arrays, tmp_path):
    return _quiet(train_phase, params, "foundation", arrays, tmp_path, final_eval=False,
                  progress=False).step_losses


def _decreases(losses, k=4):
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


def test_bf16_train_phase_tracks_fp32(tiny_params, arrays, tmp_path):
    fp32 = _curve(_with(tiny_params, epochs=2), arrays, tmp_path / "fp32")
    bf16 = _curve(_with(tiny_params, epochs=2, precision="bf16"), arrays, tmp_path / "bf16")
    assert len(fp32) == len(bf16) > 8
    assert all(math.isfinite(x) for x in bf16) and _decreases(bf16)
    rel = max(abs(a - b) / a for a, b in zip(fp32, bf16, strict=True))
    assert rel < 0.05, (fp32, bf16)


def test_adam_atan2_step_matches_its_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    g1, g2 = torch.tensor([0.1, -0.3, 0.0]), torch.tensor([0.2, 0.1, -0.4])
    opt = AdamAtan2([p], lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)
    expected = p.detach().clone()
    m = torch.zeros(3)
    v = torch.zeros(3)
    for t, g in enumerate((g1, g2), start=1):
        p.grad = g.clone()
        opt.step()
        expected = expected * (1 - 0.01 * 0.1)
        m = 0.9 * m + 0.1 * g
        v = 0.95 * v + 0.05 * g * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.95**t)
        expected = expected - 0.01 * 1.27 * torch.atan2(m_hat, v_hat.sqrt())
        assert torch.allclose(p.detach(), expected, atol=1e-7), t


def test_adam_atan2_train_phase(tiny_params, arrays, tmp_path):
    params = _with(tiny_params, optimizer="adam_atan2")
    from hrm.model import build_model

    opt = build_optimizer(build_model(params.model, arrays.vocab_size, arrays.seq_len, "cpu"), params.train, 1e-3)
    assert isinstance(opt, AdamAtan2)
    assert [g["weight_decay"] for g in opt.param_groups] == [params.train.weight_decay, 0.0]
    result = train_phase(params, "foundation", arrays, tmp_path, final_eval=False, progress=False)
    losses = result.step_losses
    assert all(math.isfinite(x) for x in losses) and _decreases(losses), losses
    state = torch.load(result.checkpoint, weights_only=False)
    assert set(state["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


@pytest.mark.slow
@pytest.mark.heavy  # inductor's cold compile: about 35 s here
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex")
def test_compiled_train_phase_matches_eager(tiny_params, arrays, tmp_path):
    """model.compile: a short phase with inductor-compiled H/L modules gives the eager losses.
    Slow: inductor compiles forward and backward (about 35 s on the 2-core machine, cold cache)."""
    params = _with(tiny_params, model={"compile": False}, epochs=3, deterministic=False)
    small = subset(arrays, slice(0, 16))
    eager = _curve(params, small, tmp_path / "eager")
    compiled = _curve(_with(params, model={"compile": True}), small, tmp_path / "compiled")
    assert len(eager) == len(compiled)
    assert all(math.isfinite(x) for x in compiled)
    rel = max(abs(a - b) / a for a, b in zip(eager, compiled, strict=True))
    assert rel < 1e-3, (eager, compiled)


# ---- head_positions ------------------------------------------------------------------------

def test_head_positions_train_on_the_scale_of_every_position(tiny_params, arrays, tmp_path):
    """Heads on 6 of the ~17 labelled positions per row (every edit, a weighted sample of the
    kept ones) against heads on all of them (head_positions 0), same seed: the edit losses per
    step and the epoch's token accuracy (kept positions counted with their weight) agree.
    Measured: LM losses at most 1% apart per step."""
    runs = {}
    for count in (0, 6):
        lm = []
        result = train_phase(_with(tiny_params, model={"head_positions": count}, epochs=2), "foundation", arrays,
                             tmp_path / str(count), final_eval=False, progress=False,
                             on_step=lambda info, lm=lm: lm.append(info.lm_loss))
        runs[count] = (lm, result.history)
    (dense, dense_hist), (sampled, sampled_hist) = runs[0], runs[6]
    assert len(dense) == len(sampled) > 10 and dense != sampled
    rel = [abs(a - b) / a for a, b in zip(dense, sampled, strict=True)]
    assert max(rel) < 0.05, (dense, sampled)
    for d, s in zip(dense_hist, sampled_hist, strict=True):
        assert abs(d["token_accuracy"] - s["token_accuracy"]) < 0.02, (d, s)


# ---- bootstrap_reuse -----------------------------------------------------------------------

def test_bootstrap_reuse_loss_curve_matches_recompute(tiny_params, arrays, tmp_path):
    """The reuse approximation (the next segment's no-grad prefix computed with the weights before
    the optimizer step) follows the paper's recomputed bootstrap segment: 45 tiny steps with
    halt_max_steps 4 (rows stay in flight for several steps), no exploration. The edit (LM) loss
    is compared: the total also holds the q_halt loss, whose target (a row entirely right) can
    flip between the runs at a step (measured once: 16% on one step of 45). Measured: LM losses
    at most 1.1% apart per step."""
    model = {"halt_max_steps": 4, "halt_exploration_prob": 0.0, "q_target": "bootstrap"}
    curves, totals = {}, {}
    for reuse in (True, False):
        params = _with(tiny_params, model={**model, "bootstrap_reuse": reuse}, epochs=3)
        lm = []
        result = _quiet(train_phase, params, "foundation", arrays, tmp_path / str(reuse), final_eval=False,
                        progress=False, on_step=lambda info, lm=lm: lm.append(info.lm_loss))
        curves[reuse], totals[reuse] = lm, result.step_losses
    with_reuse, without = curves[True], curves[False]
    assert len(with_reuse) == len(without) >= 40 and _decreases(totals[True]) and _decreases(with_reuse)
    rel = [abs(a - b) / b for a, b in zip(with_reuse, without, strict=True)]
    assert max(rel) < 0.03, (with_reuse, without)
    assert with_reuse != without  # the approximation is real: not the same computation
