"""`model.mask_padding`: attention reads no padding position, so a row's outputs do not depend on
what follows it, and training may trim each segment to the batch's longest row
(`HRMAct.trim_padding`) with the same losses, gradients and carried states."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from hrm.config import ModelConfig
from hrm.model import build_model
from hrm.model.act import WIDTH_MULTIPLE, active_width
from hrm.model.attention import math_attention, resolve_backend
from hrm.model.hrm import PAD_ID
from hrm.tokenizer import PAD, SPECIAL_TOKENS

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_helpers import edit_carry, losses_of  # noqa: E402

VOCAB, SEQ = 50, 64
# (first labelled position, labelled count) and the row's length; row 3 is padding (invalid)
# and longer than the others: it must not widen the trimmed width.
SPANS = ((6, 5), (6, 9), (8, 4), (6, 7))
LENGTHS = (14, 20, 15, 60)


def _model(seed: int = 0, **update):
    cfg = ModelConfig(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=2,
                      halt_max_steps=3, attention="sdpa", head_positions=0, mask_padding=True,
                      bootstrap_reuse=True).model_copy(update=update)
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, SEQ, "cpu").train()


def _padded_carry(model, seed: int = 0):
    carry = edit_carry(model, SPANS, seed=seed, invalid=(3,))
    for row, length in enumerate(LENGTHS):
        carry.inputs[row, length:] = PAD_ID
    return carry


def _record_widths(model, widths: list[int]):
    """Make `model.core.segment` append the width of every segment it runs to `widths`;
    returns the original method."""
    segment = model.core.segment

    def recording(*args, **kwargs):
        widths.append(args[2].shape[1])
        return segment(*args, **kwargs)

    model.core.segment = recording
    return segment


def test_pad_id_is_the_tokenizers():
    assert SPECIAL_TOKENS[PAD_ID] == PAD


def test_active_width_counts_valid_rows_and_rounds_up():
    carry = _padded_carry(_model())
    assert active_width(carry.inputs, carry.valid) == 32  # longest valid row 20 -> 32
    carry.valid[3] = True
    assert active_width(carry.inputs, carry.valid) == SEQ  # 60 -> 64, the full width
    assert active_width(carry.inputs, torch.zeros(4, dtype=torch.bool)) == WIDTH_MULTIPLE


def test_masked_outputs_do_not_depend_on_padding():
    """The states at padding positions (whatever the earlier segments left there) change no real
    position; without the mask they do (the test can fail)."""
    for masked in (True, False):
        model = _model(mask_padding=masked).eval()
        carry = _padded_carry(model)
        noisy = torch.randn(carry.z_H.shape, generator=torch.Generator().manual_seed(1))
        outs = []
        for z_pad in (None, noisy):
            z_H, z_L = carry.z_H.clone(), carry.z_L.clone()
            if z_pad is not None:
                for row, length in enumerate(LENGTHS):
                    z_H[row, length:] = z_pad[row, length:]
                    z_L[row, length:] = z_pad[row, length:]
            with torch.no_grad():
                outs.append(model.core(z_H, z_L, carry.inputs))
        same = all(torch.allclose(outs[0].logits[row, :length], outs[1].logits[row, :length], atol=1e-5)
                   for row, length in enumerate(LENGTHS))
        assert same is masked
        if masked:
            assert torch.allclose(outs[0].q_halt, outs[1].q_halt, atol=1e-5)


def test_masked_math_and_sdpa_agree():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 10, 8, generator=gen) for _ in range(3))
    mask = torch.ones(3, 1, 1, 10, dtype=torch.bool)
    mask[0, ..., 6:] = False
    mask[2, ..., 3:] = False
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(math_attention(q, k, v, mask), fused, atol=1e-5)
    # the masked keys take no part: the same as attention over the kept keys alone
    assert torch.allclose(fused[0], math_attention(q[:1], k[:1, :, :6], v[:1, :, :6])[0], atol=1e-5)


def test_cpu_bf16_attention_computes_in_fp32(monkeypatch):
    """Under bf16 autocast, the CPU kernel gets fp32 q/k/v (`CPU_KERNEL_FP32`): it computes the
    fp32 attention of the bf16 inputs; the bf16 kernel (switched off) rounds inside."""
    import hrm.model.attention as attention

    layer = attention.Attention(32, 2, "sdpa")
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 24, 2, 16, generator=gen).to(torch.bfloat16) for _ in range(3))
    mask = torch.ones(2, 1, 1, 24, dtype=torch.bool)
    mask[1, ..., 10:] = False
    seen = []
    kernel = torch.nn.functional.scaled_dot_product_attention

    def spy(q_, k_, v_, **kw):
        out = kernel(q_, k_, v_, **kw)
        seen.append((q_.dtype, out.float()))
        return out

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer.attend(q, k, v, mask)
        monkeypatch.setattr(attention, "CPU_KERNEL_FP32", False)
        layer.attend(q, k, v, mask)
    reference = math_attention(*(t.float().transpose(1, 2) for t in (q, k, v)), mask)
    (fp32_dtype, fp32_out), (bf16_dtype, bf16_out) = seen
    assert (fp32_dtype, bf16_dtype) == (torch.float32, torch.bfloat16)
    assert (fp32_out - reference).abs().max() < 1e-5 < 1e-4 < (bf16_out - reference).abs().max()


def test_a_row_of_padding_still_has_a_key():
    model = _model().eval()
    inputs = torch.zeros(2, SEQ, dtype=torch.int32)
    inputs[1, :5] = 9
    z_H, z_L = model.core.initial_state(2, SEQ, torch.device("cpu"))
    with torch.no_grad():
        out = model.core(z_H, z_L, inputs)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.q_halt).all()


@pytest.mark.parametrize("head_positions", [0, 8])
@pytest.mark.parametrize("extras", [{}, {"learned_positions": True, "copy_head": True}],
                         ids=["plain", "positions+copy_head"])
def test_trimmed_training_steps_equal_full_width(head_positions, extras):
    """Two training segments (the second from the first's carried prefix, with a longer row
    loaded into a halted slot in between): losses, gradients, Q values and the real positions'
    carried states equal those of the untrimmed model, while the segments ran on 32 and 48
    columns of 64."""
    runs, widths = {}, {False: [], True: []}
    for trim in (False, True):
        model = _model(head_positions=head_positions, **extras)
        model.trim_padding = trim
        _record_widths(model, widths[trim])
        torch.manual_seed(5)  # pick_positions' draws
        carry = _padded_carry(model)
        steps = []
        for step in range(2):
            model.zero_grad(set_to_none=True)
            out = model(carry, labels_only=True)
            parts = losses_of(out)
            parts.total.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            steps.append((out, parts, grads, (carry.inputs != PAD_ID).sum(1).tolist()))
            carry = out.carry
            if step == 0:  # row 2 halts and a 40-token row takes its place
                row, length = 2, 40
                carry.inputs[row] = torch.randint(7, VOCAB, (SEQ,), generator=torch.Generator().manual_seed(3))
                carry.inputs[row, length:] = PAD_ID
                carry.labels[row] = -100
                carry.labels[row, 30:36] = carry.inputs[row, 30:36].long()
                carry.labels[row, 33] = 5
                carry.inserts[row, :, 0] = -1
                carry.fresh[row] = True
        runs[trim] = steps
    assert widths == {False: [SEQ] * 4, True: [32, 32, 48, 48]}  # each step and its bootstrap segment
    for (full, pf, gf, _), (cut, pc, gc, lengths) in zip(runs[False], runs[True], strict=True):
        for name in ("total", "lm", "q_halt", "q_continue"):
            assert torch.allclose(getattr(pc, name), getattr(pf, name), rtol=1e-5, atol=1e-6), name
        assert torch.equal(pc.token_correct, pf.token_correct)
        assert torch.allclose(cut.q_halt, full.q_halt, atol=1e-5)
        assert torch.allclose(cut.target_q_continue, full.target_q_continue, atol=1e-5)
        assert gf.keys() == gc.keys()
        for name, g in gf.items():
            assert torch.allclose(gc[name], g, rtol=1e-4, atol=1e-6), name
        for row in range(3):  # the valid rows
            n = lengths[row]
            assert torch.allclose(cut.carry.z_H[row, :n], full.carry.z_H[row, :n], atol=1e-5)
            assert torch.allclose(cut.carry.z_L[row, :n], full.carry.z_L[row, :n], atol=1e-5)
        assert cut.carry.z_H.shape == full.carry.z_H.shape


def test_flash_is_not_paired_with_the_padding_mask(monkeypatch):
    import hrm.model.attention as attention

    monkeypatch.setattr(attention, "flash_available", lambda: True)
    assert resolve_backend("auto", "cuda", mask_padding=False) == "flash"
    assert resolve_backend("auto", "cuda", mask_padding=True) == "sdpa"
    with pytest.raises(ValueError, match="mask_padding"):
        resolve_backend("flash", "cuda", mask_padding=True)


def test_clean_evaluation_in_length_order_equals_full_width():
    """`evaluate_arrays` (end-of-phase and per-epoch val metrics) feeds a masked model's rows in
    order of length, so its batches are trimmed; the metrics are those of the full width."""
    from hrm.train.data import TrainArrays
    from hrm.train.loop import evaluate_arrays

    model = _model()
    carry = _padded_carry(model)
    arrays = TrainArrays(carry.inputs.numpy(), carry.labels.numpy(), carry.inserts.numpy(), VOCAB)
    results, widths = {}, {False: [], True: []}
    for trim in (False, True):
        model.trim_padding = trim
        segment = _record_widths(model, widths[trim])
        results[trim] = evaluate_arrays(model, arrays, 2, "softmax")
        model.core.segment = segment
    assert widths[False] == [SEQ] * 6 and widths[True] == [16] * 3 + [SEQ] * 3  # rows 14, 15 | 20, 60
    for key, value in results[False].items():
        assert results[True][key] == pytest.approx(value, rel=1e-5), key
