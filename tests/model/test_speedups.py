"""Speed-ups that must not change what is computed: heads on the label columns only, heads on a
sample of positions (exact when the sample holds every label, unbiased otherwise), reuse of the
bootstrap segment's no-grad prefix, and bf16 autocast on CPU tracking fp32."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from hrm.model import build_model
from hrm.model.act import label_span, pick_positions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_helpers import edit_carry, losses_of  # noqa: E402

VOCAB, SEQ, PROMPT = 50, 16, 10
# Label spans (first labelled position, count) per row; row 3 is padding: its labels start
# before the others' and must not widen the span.
SPANS = ((PROMPT, 3), (PROMPT, 6), (PROMPT, 2), (PROMPT - 2, 5))


def _carry(model, seed: int = 0):
    return edit_carry(model, SPANS, seed=seed, invalid=(3,))


def _losses(out, **kwargs):
    return losses_of(out, **kwargs)


def test_label_span_covers_valid_rows_only():
    carry = _carry(build_model_for())
    assert label_span(carry.labels, carry.valid) == (PROMPT, PROMPT + 6)
    assert label_span(torch.full((2, SEQ), -100), torch.ones(2, dtype=torch.bool)) == (0, 1)


def build_model_for(seed: int = 0, **update):
    from hrm.config import ModelConfig

    cfg = ModelConfig(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=2,
                      halt_max_steps=3, attention="sdpa", head_positions=0).model_copy(update=update)
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, SEQ, "cpu").train()


def test_labels_only_head_gives_the_same_losses_and_gradients():
    model = build_model_for()
    grads = {}
    results = {}
    for labels_only in (False, True):
        model.zero_grad(set_to_none=True)
        out = model(_carry(model), labels_only=labels_only)
        parts = _losses(out)
        parts.total.backward()
        results[labels_only] = (out, parts)
        grads[labels_only] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    (full, pf), (sliced, ps) = results[False], results[True]
    assert full.logits.shape == (4, SEQ, VOCAB) and sliced.logits.shape == (4, 6, VOCAB)
    assert torch.allclose(sliced.logits, full.logits[:, PROMPT : PROMPT + 6], atol=1e-6)
    assert torch.allclose(sliced.insert_logits, full.insert_logits[:, PROMPT : PROMPT + 6], atol=1e-6)
    assert sliced.slot_cols.tolist() == [0, 0, 0] and full.slot_cols.tolist() == [PROMPT] * 3
    assert torch.allclose(sliced.slot_logits, full.slot_logits, atol=1e-6)
    for name in ("total", "lm", "q_halt", "q_continue"):
        assert torch.allclose(getattr(ps, name), getattr(pf, name), rtol=1e-6, atol=1e-7), name
    assert torch.equal(ps.seq_correct, pf.seq_correct)
    assert int(ps.token_correct.sum()) == int(pf.token_correct.sum())
    assert int(ps.label_mask.sum()) == int(pf.label_mask.sum())
    assert grads[False].keys() == grads[True].keys()
    for name, g in grads[False].items():
        assert torch.allclose(grads[True][name], g, rtol=1e-5, atol=1e-7), name


def test_bootstrap_reuse_equals_recompute_with_fixed_weights():
    """With unchanged weights, starting a segment from the previous bootstrap segment's no-grad
    prefix computes exactly what recomputing it does (also when only some rows are primed)."""
    runs = {}
    for reuse in (False, True):
        model = build_model_for(bootstrap_reuse=reuse)
        carry = _carry(model)
        seen = []
        for step in range(3):
            if step == 2:
                carry.fresh = torch.tensor([False, True, False, False])  # a newly loaded row
            out = model(carry, labels_only=True)
            seen.append(out)
            carry = out.carry
            carry.halted[:] = False
        runs[reuse] = seen
        if reuse:
            assert bool(carry.primed.all())
    for a, b in zip(runs[False], runs[True], strict=True):
        assert torch.allclose(a.logits, b.logits, atol=1e-5)
        assert torch.allclose(a.q_halt, b.q_halt, atol=1e-5) and torch.allclose(a.q_continue, b.q_continue, atol=1e-5)
        assert torch.allclose(a.target_q_continue, b.target_q_continue, atol=1e-5)
        assert torch.equal(a.steps, b.steps)


def test_bootstrap_reuse_skips_the_prefix():
    model = build_model_for(bootstrap_reuse=True)
    calls = []
    model.core.L.register_forward_hook(lambda *a: calls.append(1))
    carry = _carry(model)
    out = model(carry, labels_only=True)  # fresh: prefix 3 L updates + 1 final, bootstrap 4
    assert len(calls) == 8
    calls.clear()
    out.carry.halted[:] = False
    model(out.carry, labels_only=True)  # primed: final 1 + bootstrap 4
    assert len(calls) == 5


def test_bf16_autocast_training_tracks_fp32():
    """A short training run under CPU bf16 autocast follows the fp32 loss curve; logits come out
    in bf16 and the losses in fp32."""
    curves = {}
    for precision in ("fp32", "bf16"):
        model = build_model_for(seed=1)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        carry = _carry(model)
        curve = []
        for _ in range(12):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(carry, labels_only=True)
            parts = _losses(out)
            assert parts.lm.dtype == torch.float32
            assert out.logits.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
            parts.total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            carry = out.carry
            carry.fresh[:] = carry.halted
            carry.halted[:] = False
            curve.append(float(parts.lm.detach()))
        curves[precision] = curve
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert fp32[-1] < 0.8 * fp32[0]  # it learns
    rel = max(abs(a - b) / a for a, b in zip(fp32, bf16, strict=True))
    assert rel < 0.05, (fp32, bf16)


def test_learned_positions_break_the_position_symmetry():
    """With RoPE only, positions holding the same token start with equal embeddings; the
    learned position table makes them differ and is a trained parameter in the state dict."""
    plain, learned = build_model_for(), build_model_for(learned_positions=True)
    assert "core.positions" not in plain.state_dict() and "core.positions" in learned.state_dict()
    out = learned(_carry(learned), labels_only=True)
    _losses(out).total.backward()
    assert learned.core.positions.grad is not None and learned.core.positions.grad.abs().sum() > 0


def test_q_only_bootstrap_segment_gives_the_same_q_values():
    """`carry_out=False` runs the final H update's last block on position 0 only: the Q values
    equal those of the full segment."""
    for arch in ("hrm", "trm"):
        model = build_model_for(architecture=arch, H_layers=2, L_layers=2)
        carry = _carry(model)
        with torch.no_grad():
            full = model.core.segment(carry.z_H, carry.z_L, carry.inputs, lm_head=False, return_prefix=True)
            q_only = model.core.segment(carry.z_H, carry.z_L, carry.inputs, lm_head=False, return_prefix=True,
                                carry_out=False)
        assert q_only.z_H is None and q_only.z_L is None
        assert torch.allclose(q_only.q_halt, full.q_halt, atol=1e-6)
        assert torch.allclose(q_only.q_continue, full.q_continue, atol=1e-6)
        assert all(torch.equal(a, b) for a, b in zip(q_only.prefix, full.prefix, strict=True))


def test_split_last_block_gives_the_same_state_and_gradients(monkeypatch):
    """Under autograd with the head span, the final H update's last block differentiates only the
    positions the heads read; the carry, the losses and every gradient are those of the full
    block (the split switched off)."""
    from hrm.model.hrm import HRMCore

    results = {}
    for split in (True, False):
        if not split:
            monkeypatch.setattr(HRMCore, "_head_rows", staticmethod(lambda *a: (None, None)))
        model = build_model_for(H_layers=2, L_layers=2)
        out = model(_carry(model), labels_only=True)
        _losses(out).total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[split] = (out, grads)
    (a, ga), (b, gb) = results[True], results[False]
    assert torch.allclose(a.carry.z_H, b.carry.z_H, atol=1e-6) and torch.equal(a.carry.z_L, b.carry.z_L)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert ga.keys() == gb.keys() and len(ga) == len(list(model.parameters()))
    for name, g in gb.items():
        assert torch.allclose(ga[name], g, rtol=1e-5, atol=1e-7), name


def test_head_rows_split():
    from hrm.model.hrm import HRMCore

    rows, rest = HRMCore._head_rows(16, (10, 16), torch.device("cpu"))
    assert rows.tolist() == [0, *range(10, 16)] and rest.tolist() == list(range(1, 10))
    rows, rest = HRMCore._head_rows(16, (0, 3), torch.device("cpu"))
    assert rows.tolist() == [0, 1, 2] and rest.tolist() == list(range(3, 16))
    assert HRMCore._head_rows(16, (2, 16), torch.device("cpu")) == (None, None)  # too few left


# ---- heads on a sample of positions (model.head_positions) --------------------------------

def test_sampled_positions_holding_every_label_equal_the_dense_span():
    """With head_positions at least the labelled positions of every row, the sample is all of
    them (each kept one stands for itself, keep_scale 1): losses, accuracies and gradients are
    those of the dense label span."""
    results = {}
    for count in (0, SEQ):
        model = build_model_for(head_positions=count)
        out = model(_carry(model), labels_only=True)
        parts = _losses(out)
        parts.total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[count] = (out, parts, grads)
    (dense, pd, gd), (sampled, ps, gs) = results[0], results[SEQ]
    assert dense.keep_scale is None and sampled.logits.shape == (4, SEQ, VOCAB)
    assert sampled.keep_scale[:3].flatten().tolist() == [0.0, 1.0, 1.0]  # row 0 keeps nothing
    for name in ("total", "lm", "q_halt", "q_continue"):
        assert torch.allclose(getattr(ps, name), getattr(pd, name), rtol=1e-6, atol=1e-7), name
    assert int(ps.label_mask.sum()) == int(pd.label_mask.sum()) == 11
    assert int(ps.token_correct.sum()) == int(pd.token_correct.sum())
    assert int(ps.edited_mask.sum()) == int(pd.edited_mask.sum()) == 7
    assert torch.equal(ps.seq_correct, pd.seq_correct)
    assert gd.keys() == gs.keys()
    for name, g in gd.items():
        assert torch.allclose(gs[name], g, rtol=1e-5, atol=1e-7), name


def test_pick_positions_takes_every_edit_and_a_uniform_sample_of_the_rest():
    """6 positions per row: the 3 edited ones of each row (the anchor's insertion first) and 3
    kept ones drawn uniformly, keep_scale = kept positions / kept ones drawn; a row with fewer
    labels gives all of them, a padding row none."""
    model = build_model_for()
    carry = edit_carry(model, [(2, 13), (3, 10), (1, 4), (0, 8)], invalid=(3,))
    positions = carry.inserts[:, :, 0].clone()
    positions[~carry.valid] = -1
    labelled = (carry.labels != -100) & carry.valid.view(-1, 1)
    edits = [{r[0], r[0] + 1, r[0] + r[1] - 1} for r in ((2, 13), (3, 10), (1, 4))]
    hits = torch.zeros(3, SEQ)
    torch.manual_seed(0)
    draws = 400
    for _ in range(draws):
        picked, keep_scale = pick_positions(carry, positions, 6)
        assert picked.shape == (4, 6) and (picked[3] == -1).all() and keep_scale[3].item() == 0.0
        for row in range(3):
            got = [int(p) for p in picked[row] if p >= 0]
            assert len(got) == len(set(got)) == min(6, int(labelled[row].sum()))
            assert edits[row] <= set(got) and all(labelled[row, p] for p in got)
            assert int(picked[row, 0]) == (2, 3, 1)[row]  # the inserting position comes first
            kept = int(labelled[row].sum()) - 3
            assert keep_scale[row].item() == pytest.approx(kept / (len(got) - 3))
            hits[row, got] += 1
    # Every kept position of a row whose kept ones do not all fit is drawn about equally often.
    for row, (lo, n) in enumerate(((2, 13), (3, 10))):
        kept = [p for p in range(lo, lo + n) if p not in edits[row]]
        freq = hits[row, kept] / draws
        assert torch.allclose(freq, torch.full_like(freq, 3 / len(kept)), atol=0.08), freq


def test_sampled_loss_is_an_unbiased_estimate_of_the_dense_loss():
    """Fixed weights, 5 of 12-14 labelled positions per row: the mean over many draws of the
    sampled edit loss (kept positions weighted by keep_scale, divided by all labelled positions
    as the training loop does) is the loss over every labelled position; without the weights it
    is not. One draw is a batch of 40 copies of 3 rows (each copy samples its own positions)."""
    spans = [(2, 13), (3, 12), (1, 14)] * 40
    dense_model = build_model_for(q_target="halt_only")
    sampled_model = build_model_for(q_target="halt_only", head_positions=5)
    carry = edit_carry(dense_model, spans, seed=3)
    carry.inputs[3:] = carry.inputs[:3].repeat(39, 1)  # 40 copies of the first 3 rows
    carry.labels[3:] = carry.labels[:3].repeat(39, 1)
    carry.inserts[3:] = carry.inserts[:3].repeat(39, 1, 1)
    n_labels = float((carry.labels != -100).sum())
    with torch.no_grad():
        dense = float(_losses(dense_model(carry, labels_only=True), lm_denominator=n_labels).lm)
        torch.manual_seed(0)
        weighted, unweighted = [], []
        for _ in range(24):
            out = sampled_model(carry, labels_only=True)
            assert out.logits.shape == (120, 5, VOCAB)
            weighted.append(float(_losses(out, lm_denominator=n_labels).lm))
            out.keep_scale = None
            unweighted.append(float(_losses(out, lm_denominator=n_labels).lm))
    weighted, unweighted = torch.tensor(weighted), torch.tensor(unweighted)
    se = float(weighted.std()) / len(weighted) ** 0.5
    assert se > 0  # the draws do differ
    assert abs(float(weighted.mean()) - dense) < 4 * se, (float(weighted.mean()), dense, se)
    assert abs(float(unweighted.mean()) - dense) > 20 * se, (float(unweighted.mean()), dense, se)


def test_plain_forward_equals_the_segment_without_speed_ups():
    """`HRMCore.forward` (the math, no flags) and `segment` with every speed-up off compute the
    same segment: state, logits, insert logits and Q values; also with the gate forced off and
    with the TRM recursion."""
    for arch in ("hrm", "trm"):
        model = build_model_for(architecture=arch, H_layers=2, L_layers=1)
        carry = _carry(model)
        for gate_off in (False, True):
            with torch.no_grad():
                plain = model.core(carry.z_H, carry.z_L, carry.inputs, gate_off=gate_off)
                fast = model.core.segment(carry.z_H, carry.z_L, carry.inputs, gate_off=gate_off)
            for a, b in ((plain.z_H, fast.z_H), (plain.z_L, fast.z_L), (plain.logits, fast.logits),
                         (plain.insert_logits, fast.insert_logits), (plain.q_halt, fast.q_halt),
                         (plain.q_continue, fast.q_continue)):
                assert torch.equal(a, b), arch
            assert plain.logits.shape == (carry.inputs.shape[0], SEQ, VOCAB)
