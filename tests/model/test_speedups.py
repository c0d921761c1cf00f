"""Speed-ups that must not change what is computed: LM head on the label columns only, reuse of
the bootstrap segment's no-grad prefix, and bf16 autocast on CPU tracking fp32."""

from __future__ import annotations

import torch

from hrm.model import build_model
from hrm.model.act import label_span
from hrm.model.losses import act_losses

VOCAB, SEQ, PROMPT = 50, 16, 10


def _carry(model, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, VOCAB, (4, SEQ), generator=gen, dtype=torch.int32)
    ids[:, PROMPT:] = 5
    labels = torch.full((4, SEQ), -100)
    for row, length in enumerate((3, 6, 2, 5)):  # different target lengths per row
        labels[row, PROMPT : PROMPT + length] = ids[row, :length].long()
    carry = model.initial_carry(4, torch.device("cpu"))
    carry.inputs, carry.labels = ids, labels
    carry.valid[:] = True
    carry.valid[3] = False  # a padding row: its labels must not widen the span
    carry.halted[:] = False
    return carry


def _losses(out):
    return act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue, out.target_q_continue,
                      q_weight=0.5)


def test_label_span_covers_valid_rows_only():
    carry = _carry(build_model_for())
    assert label_span(carry.labels, carry.valid) == (PROMPT, PROMPT + 6)
    assert label_span(torch.full((2, SEQ), -100), torch.ones(2, dtype=torch.bool)) == (0, 1)


def build_model_for(seed: int = 0, **update):
    from hrm.config import ModelConfig

    cfg = ModelConfig(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=2,
                      halt_max_steps=3, attention="sdpa").model_copy(update=update)
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


def test_learned_positions_break_the_mask_symmetry():
    """With RoPE only, target positions holding the same token start with equal embeddings; the
    learned position table makes them differ and is a trained parameter in the state dict."""
    plain, learned = build_model_for(), build_model_for(learned_positions=True)
    assert "core.positions" not in plain.state_dict() and "core.positions" in learned.state_dict()
    out = learned(_carry(learned), labels_only=True)
    act_losses(out.logits, out.labels, out.valid, out.q_halt, out.q_continue, out.target_q_continue,
               q_weight=0.5).total.backward()
    assert learned.core.positions.grad is not None and learned.core.positions.grad.abs().sum() > 0


def test_q_only_bootstrap_segment_gives_the_same_q_values():
    """`carry_out=False` runs the final H update's last block on position 0 only: the Q values
    equal those of the full segment."""
    for arch in ("hrm", "trm"):
        model = build_model_for(architecture=arch, H_layers=2, L_layers=2)
        carry = _carry(model)
        with torch.no_grad():
            full = model.core(carry.z_H, carry.z_L, carry.inputs, lm_head=False, return_prefix=True)
            q_only = model.core(carry.z_H, carry.z_L, carry.inputs, lm_head=False, return_prefix=True,
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
