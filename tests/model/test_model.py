"""HRM model: shapes, heads (copy bias, insert head, slots), one-step gradient, carry handling,
attention kernels, feedback gate, losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrm.config import ModelConfig
from hrm.model import build_model
from hrm.model.attention import Attention, flash_available
from hrm.model.inference import run_inference, slot_logits
from hrm.model.layers import RotaryEmbedding, apply_rotary, trunc_normal_
from hrm.model.losses import act_losses, stablemax_log_probs

VOCAB, SEQ = 50, 12


def _model(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, SEQ, "cpu")


def _carry(model, ids):
    carry = model.initial_carry(ids.shape[0], torch.device("cpu"))
    carry.inputs = ids.to(torch.int32)
    carry.valid[:] = True
    carry.halted[:] = False
    return carry


def test_shapes_and_q_head_init(small_cfg, ids):
    model = _model(small_cfg)
    out = model(_carry(model, ids))
    assert out.logits.shape == (4, SEQ, VOCAB)
    assert out.insert_logits.shape == out.insert_labels.shape == (4, SEQ)
    assert torch.equal(out.own_tokens, ids.to(torch.int32)) and out.keep_scale is None
    # No insertion in the carry: no inserted-token logits, and no label anywhere.
    assert out.slot_logits is None and out.slot_labels.shape == (0, model.slots - 1)
    assert (out.insert_labels == -100).all()
    assert out.q_halt.shape == out.q_continue.shape == (4,)
    assert out.q_halt.dtype == torch.float32
    # Zero weights and bias -5: both Q logits start at exactly -5.
    assert torch.allclose(out.q_halt, torch.full((4,), -5.0))
    assert out.carry.z_H.shape == (4, SEQ, 32) and not out.carry.z_H.requires_grad
    assert out.steps.tolist() == [1, 1, 1, 1]


def test_inference_runs_halt_max_steps_and_returns_fp32(small_cfg, ids):
    model = _model(small_cfg)
    out = run_inference(model, ids)
    assert out.steps.tolist() == [3, 3, 3, 3]
    assert out.logits.dtype == torch.float32 and out.logits.shape == (4, SEQ, VOCAB)
    assert out.insert_logits.dtype == torch.float32 and out.insert_logits.shape == (4, SEQ)
    assert out.z_H.shape == (4, SEQ, small_cfg.hidden_size)
    # The untrained gate is sigmoid(reverse_gate_init); the feedback path does contribute.
    assert out.gate_mean == pytest.approx(float(torch.sigmoid(torch.tensor(small_cfg.reverse_gate_init))))
    assert out.feedback_ratio > 0
    assert run_inference(model, ids, max_steps=2).steps.tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="token ids"):
        run_inference(model, torch.full((1, SEQ), VOCAB))


def test_halt_on_q_stops_rows_whose_q_halt_wins(small_cfg, ids):
    model = _model(small_cfg)
    with torch.no_grad():
        model.core.q_head.bias.copy_(torch.tensor([5.0, -5.0]))  # q_halt > q_continue everywhere
    assert run_inference(model, ids, halt_on_q=True).steps.tolist() == [1, 1, 1, 1]
    assert run_inference(model, ids, halt_on_q=False).steps.tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("arch", ["hrm", "trm"])
def test_only_last_updates_carry_gradient(small_cfg, ids, arch):
    cfg = small_cfg.model_copy(update={"architecture": arch})
    model = _model(cfg).eval()  # eval: no extra bootstrap segment; autograd still on
    calls = {"L": [], "H": []}
    if arch == "hrm":
        model.core.L.register_forward_hook(lambda *a: calls["L"].append(torch.is_grad_enabled()))
        model.core.H.register_forward_hook(lambda *a: calls["H"].append(torch.is_grad_enabled()))
    else:
        model.core.L.register_forward_hook(lambda *a: calls["L"].append(torch.is_grad_enabled()))
    model(_carry(model, ids))
    if arch == "hrm":
        assert len(calls["L"]) == 2 * 3 and calls["L"].count(True) == 1 and calls["L"][-1]
        assert len(calls["H"]) == 2 and calls["H"] == [False, True]
    else:
        # shared net: per cycle 3 L updates + 1 H update; the last full recursion (4 calls) has grad
        assert calls["L"] == [False] * 4 + [True] * 4


def test_gradient_ignores_no_grad_cycles(small_cfg, ids):
    """Changing the carry's H state only matters through the tracked updates: the gradient w.r.t. a
    parameter is the same function of the input to the last two updates."""
    model = _model(small_cfg)
    carry = _carry(model, ids)
    carry.fresh[:] = False
    carry.z_H = carry.z_H.clone().requires_grad_(True)
    out = model(carry)
    out.logits.float().sum().backward()
    # The carry enters only through no-grad cycles: no gradient can reach it.
    assert carry.z_H.grad is None
    assert model.core.L.layers[0].attn.qkv.weight.grad is not None


def test_fresh_rows_reset_to_initial_state(small_cfg, ids):
    model = _model(small_cfg)
    carry = _carry(model, ids)
    first = model(carry).carry  # one segment: states moved away from init
    first.fresh = torch.tensor([True, False, False, False])
    second = model(first)
    reference = model(_carry(model, ids))  # every row fresh
    assert torch.allclose(second.logits[0], reference.logits[0], atol=1e-6)
    assert not torch.allclose(second.logits[1], reference.logits[1], atol=1e-3)
    assert second.steps.tolist() == [1, 2, 2, 2]


def test_sdpa_matches_math(small_cfg, ids):
    model = _model(small_cfg)
    sdpa = run_inference(model, ids).logits
    model.core.set_attention_backend("math")
    math = run_inference(model, ids).logits
    assert torch.allclose(sdpa, math, atol=1e-5, rtol=1e-4)


def test_flash_backend_with_fp32_inputs_computes_with_sdpa(small_cfg, ids):
    """flash-attn takes only fp16/bf16: fp32 calls (no autocast) must not reach it."""
    model = _model(small_cfg)
    sdpa = run_inference(model, ids).logits
    model.core.set_attention_backend("flash")  # flash_attn is not even importable here
    assert torch.equal(run_inference(model, ids).logits, sdpa)


def _flash_model(small_cfg):
    """(config, model) with the flash backend on CUDA; skips where flash-attn is absent."""
    if not flash_available():
        pytest.skip("flash-attn not installed")
    cfg = small_cfg.model_copy(update={"attention": "flash"})
    torch.manual_seed(0)
    return cfg, build_model(cfg, VOCAB, SEQ, "cuda")


@pytest.mark.cuda
def test_flash_fp32_inference_and_bf16_backward_on_cuda(small_cfg, ids):
    cfg, model = _flash_model(small_cfg)
    fp32 = run_inference(model, ids.cuda()).logits  # outside autocast: computed by SDPA
    assert torch.isfinite(fp32).all()
    block = next(m for m in model.modules() if isinstance(m, Attention))
    rope = model.core.rope()  # the full-length table
    x = torch.randn(2, SEQ, cfg.hidden_size, device="cuda", requires_grad=True)
    grads, outs = [], []
    for backend in ("flash", "sdpa"):
        block.backend = backend
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = block(x, rope)
        out.float().sum().backward()
        outs.append(out.float())
        grads.append(x.grad.float().clone())
        x.grad = None
    assert torch.allclose(outs[0], outs[1], atol=5e-2, rtol=5e-2)
    assert torch.allclose(grads[0], grads[1], atol=5e-2, rtol=5e-2)


@pytest.mark.cuda
def test_flash_matches_sdpa(small_cfg, ids):
    _, model = _flash_model(small_cfg)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        flash = run_inference(model, ids.cuda()).logits
        model.core.set_attention_backend("sdpa")
        sdpa = run_inference(model, ids.cuda()).logits
    assert torch.allclose(flash, sdpa, atol=5e-2, rtol=5e-2)


def test_rope_preserves_norm_and_relative_positions():
    rope = RotaryEmbedding(8, 16, 10000.0)()
    x = torch.randn(1, 16, 1, 8)
    y = apply_rotary(x, rope)
    assert torch.allclose(x.norm(dim=-1), y.norm(dim=-1), atol=1e-5)
    # Dot product of rotated q, k depends only on the offset: same vectors at (2,5) and (7,10).
    q, k = torch.randn(8), torch.randn(8)
    seq = torch.zeros(1, 16, 1, 8)
    seq[0, 2, 0], seq[0, 5, 0], seq[0, 7, 0], seq[0, 10, 0] = q, k, q, k
    r = apply_rotary(seq, rope)[0, :, 0]
    assert torch.allclose(r[2] @ r[5], r[7] @ r[10], atol=1e-5)


def test_attention_equals_rotate_half_reference():
    """The stored q/k weights keep the reference layout: the attention (computed with adjacent
    RoPE pairs on permuted projection rows) equals rotate-half RoPE on the stored rows."""
    torch.manual_seed(0)
    d, heads, seq = 32, 2, 12
    attn = Attention(d, heads, "sdpa")
    rope = RotaryEmbedding(d // heads, seq, 10000.0)
    x = torch.randn(3, seq, d)
    q, k, v = (x @ attn.qkv.weight.T).view(3, seq, 3, heads, d // heads).unbind(dim=2)
    angle = torch.atan2(rope.table[..., 1], rope.table[..., 0])
    cos, sin = (torch.cat((f(angle), f(angle)), dim=-1)[:, None, :] for f in (torch.cos, torch.sin))

    def rotate_half(t):
        t1, t2 = t.chunk(2, dim=-1)
        return torch.cat((-t2, t1), dim=-1)

    q, k = (t * cos + rotate_half(t) * sin for t in (q, k))
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    ref = ref.transpose(1, 2).reshape(3, seq, d) @ attn.out.weight.T
    assert torch.allclose(attn(x, rope()), ref, atol=1e-5)
    rows = torch.tensor([0, 5, 6])
    assert torch.allclose(attn(x, rope(), rows), ref[:, rows], atol=1e-5)


def test_reverse_gate_off_equals_model_without_feedback(small_cfg, ids):
    with_fb = _model(small_cfg.model_copy(update={"reverse_gate": "channel"}))
    without = build_model(small_cfg.model_copy(update={"reverse_feedback": False}), VOCAB, SEQ, "cpu")
    missing = without.load_state_dict(with_fb.state_dict(), strict=False)
    assert set(missing.unexpected_keys) == {"core.feedback.proj.weight", "core.feedback.gate_logit"}
    off = run_inference(with_fb, ids, reverse_gate_off=True)
    ref = run_inference(without, ids)
    assert torch.equal(off.logits, ref.logits)
    assert off.gate_mean == 0.0 and ref.gate_mean is None and ref.feedback_ratio is None
    on = run_inference(with_fb, ids)
    assert not torch.allclose(on.logits, ref.logits, atol=1e-4)


def test_a_model_without_feedback_starts_from_the_same_weights_and_random_stream(small_cfg):
    """The reverse-learning control (feedback off) is built from the same seed as the model: every
    weight they share is equal, and torch's RNG continues identically after the build (training
    samples positions from it), so the two differ in the feedback path alone."""
    from hrm.model.hrm import FEEDBACK_SEED_OFFSET

    def build(feedback: bool, channel: bool = False):
        torch.manual_seed(11)
        cfg = small_cfg.model_copy(update={"reverse_feedback": feedback,
                                           "reverse_gate": "channel" if channel else "scalar"})
        return build_model(cfg, VOCAB, SEQ, "cpu").state_dict(), torch.rand(5)

    with_fb, after_with = build(True)
    without, after_without = build(False)
    assert set(with_fb) - set(without) == {"core.feedback.proj.weight", "core.feedback.gate_logit"}
    assert all(torch.equal(with_fb[k], without[k]) for k in without)
    assert torch.equal(after_with, after_without)
    assert torch.equal(build(True, channel=True)[1], after_without)
    # Its own stream: not a copy of the draws the next module makes.
    proj = with_fb["core.feedback.proj.weight"]
    assert not torch.equal(proj, with_fb["core.token_head.weight"][: proj.shape[0]])
    torch.manual_seed(11 + FEEDBACK_SEED_OFFSET)
    expected = trunc_normal_(torch.empty_like(proj), 1.0 / small_cfg.hidden_size ** 0.5)
    assert torch.equal(proj, expected)
    assert torch.equal(build(True)[0]["core.feedback.proj.weight"], proj)  # deterministic


def test_bootstrap_target_only_in_training(small_cfg, ids):
    """Training: q_continue's target is sigmoid(max(q_halt, q_continue)) of the row's next
    segment (its q_halt at the last step), i.e. what the model computes when it runs that segment;
    eval and halt_only modes have none."""
    model = _model(small_cfg.model_copy(update={"bootstrap_reuse": False}))
    with torch.no_grad():
        # Q values that differ by row, away from the init bias's flat sigmoid(-5) region
        model.core.q_head.weight.normal_(0.0, 1.0)
        model.core.q_head.bias.zero_()
    carry = _carry(model, ids)
    for step in range(small_cfg.halt_max_steps):
        model.train()
        out = model(carry, halt_on_q=False)
        model.eval()
        with torch.no_grad():
            nxt = model(out.carry, halt_on_q=False)  # the next segment, same weights
        last = step == small_cfg.halt_max_steps - 1
        expected = torch.sigmoid(nxt.q_halt if last else torch.maximum(nxt.q_halt, nxt.q_continue))
        assert torch.allclose(out.target_q_continue, expected, atol=1e-5), step
        assert expected.std() > 0.01
        carry = out.carry
        carry.halted[:] = False
    assert model(_carry(model, ids)).target_q_continue is None  # eval mode
    halt_only = _model(small_cfg.model_copy(update={"q_target": "halt_only"}))
    halt_only.train()
    assert halt_only(_carry(halt_only, ids)).target_q_continue is None


def test_untrained_model_keeps_every_token(small_cfg, ids):
    """The copy bias on each position's own token makes the untrained model's first token the
    input everywhere, and the insert head starts at "no insertion"; without the bias the
    untrained token head is near uniform and keeps few tokens."""
    model = _model(small_cfg)
    out = run_inference(model, ids)
    assert torch.equal(out.logits.argmax(-1), ids)
    assert (out.insert_logits < 0).all()
    with torch.no_grad():
        model.core.copy_bias.zero_()
    assert (run_inference(model, ids).logits.argmax(-1) == ids).float().mean() < 0.3


def test_copy_bias_is_added_to_the_own_token_only(small_cfg, ids):
    model = _model(small_cfg)
    z = torch.randn(4, SEQ, small_cfg.hidden_size)
    with torch.no_grad():
        biased = model.core.first_logits(z, ids)
        model.core.copy_bias.fill_(0.0)
        plain = model.core.first_logits(z, ids)
    diff = biased - plain
    own = torch.zeros_like(diff, dtype=torch.bool).scatter_(-1, ids.unsqueeze(-1), True)
    assert torch.allclose(diff[own], torch.full((4 * SEQ,), 6.0), atol=1e-5)
    assert (diff[~own] == 0).all()
    assert "core.copy_bias" in dict(model.named_parameters())  # learnt, not a constant


def test_slot_logits_of_inference_are_the_training_heads(small_cfg, make_carry):
    """`slot_logits(model, z_H, rows, positions)` after `run_inference` gives the inserted-token
    logits the model's own forward (eval mode, the same segments) computes at the carry's
    insertions."""
    model = _model(small_cfg).eval()
    carry = make_carry(model, [(2, 5), (4, 6), (1, 3)])
    carry.inserts[1, 1, :2] = torch.tensor([7, 11])  # a second insertion in row 1
    inf = run_inference(model, carry.inputs)
    with torch.no_grad():
        for _ in range(small_cfg.halt_max_steps):
            out = model(carry)
            carry = out.carry
    rows, positions = torch.tensor([0, 1, 1, 2]), torch.tensor([2, 4, 7, 1])
    assert torch.equal(out.slot_rows, rows) and torch.equal(out.slot_cols, positions)
    got = slot_logits(model, inf.z_H, rows, positions)
    assert got.dtype == torch.float32 and got.shape == (4, model.slots - 1, VOCAB)
    assert torch.allclose(got, out.slot_logits, atol=1e-5)
    assert torch.allclose(inf.logits, out.logits, atol=1e-5)
    assert slot_logits(model, inf.z_H, rows[:0], positions[:0]).shape == (0, model.slots - 1, VOCAB)


def _loss_case(insert_right: bool = False, slots_right: bool = False):
    """Two rows, V = 4, K = 4. Row 0: position 1 keeps token 1, position 2 replaces its 3 by 1
    (the logits say 1 everywhere, at +10). Row 1: position 2 keeps its 2 and inserts [3, eos]
    (uniform first-token logits)."""
    logits = torch.zeros(2, 3, 4)
    logits[0, :, 1] = 10.0
    labels = torch.tensor([[-100, 1, 1], [-100, -100, 2]])
    own = torch.tensor([[0, 1, 3], [0, 0, 2]])
    insert_logits = torch.zeros(2, 3)
    if insert_right:
        insert_logits[1, 2] = 10.0
    insert_labels = torch.tensor([[-100, 0, 0], [-100, -100, 1]])
    slots = torch.zeros(1, 3, 4)
    if slots_right:
        slots[0, 0, 3] = slots[0, 1, 2] = 10.0
    return dict(logits=logits, labels=labels, own_tokens=own, insert_logits=insert_logits,
                insert_labels=insert_labels, slot_logits=slots, slot_labels=torch.tensor([[3, 2, -100]]),
                slot_rows=torch.tensor([1]), slot_cols=torch.tensor([2]))


def _act(case, valid=(True, True), target=(1.0, 0.0), **kwargs):
    case = dict(case)
    logits, labels = case.pop("logits"), case.pop("labels")
    return act_losses(logits, labels, torch.tensor(valid), torch.zeros(2), torch.zeros(2),
                      None if target is None else torch.tensor(target), q_weight=0.5, **case, **kwargs)


def test_edit_loss_by_hand():
    """lm = (sum of per-position first-token CE + insert BCE, edited positions (replaced or
    inserting) weighted by edit_weight, kept ones by keep_scale; + edit_weight * the inserted
    tokens' CE) / labelled positions."""
    a = float(torch.log1p(3 * torch.exp(torch.tensor(-10.0))))
    ln2, ln4 = float(torch.log(torch.tensor(2.0))), float(torch.log(torch.tensor(4.0)))
    case = _loss_case()
    plain = _act(case)
    expected = ((a + ln2) + (a + ln2) + (ln4 + ln2) + 2 * ln4) / 3
    assert abs(float(plain.lm) - expected) < 1e-5
    assert torch.allclose(plain.total, plain.lm + 0.5 * (plain.q_halt + plain.q_continue))
    weighted = _act(case, edit_weight=2.0, keep_scale=torch.tensor([[3.0], [1.0]]))
    expected = (3 * (a + ln2) + 2 * (a + ln2) + 2 * (ln4 + ln2) + 2 * 2 * ln4) / 3
    assert abs(float(weighted.lm) - expected) < 1e-5
    assert abs(float(_act(case, lm_denominator=6.0).lm) - float(plain.lm) / 2) < 1e-6
    assert plain.edited_mask.tolist() == [[False, False, True], [False, False, True]]
    assert plain.label_mask.tolist() == [[False, True, True], [False, False, True]]
    # Accuracy weights: 1 per labelled position, keep_scale for a kept one, 0 elsewhere.
    assert weighted.count_weight.tolist() == [[0.0, 3.0, 1.0], [0.0, 0.0, 1.0]]


def test_a_position_is_right_only_with_its_insertion():
    """A position is right when its first token, its insert decision and (when it inserts) all its
    inserted tokens are; row 1's first token is made right, then its insertion."""
    case = _loss_case()
    case["logits"][1, 2, 2] = 10.0  # row 1's first token now right
    parts = _act(case)
    assert parts.token_correct.tolist() == [[False, True, True], [False, False, False]]
    assert parts.seq_correct.tolist() == [True, False]
    no_slots = {**_loss_case(insert_right=True), "logits": case["logits"]}
    assert _act(no_slots).seq_correct.tolist() == [True, False]  # inserted tokens still wrong
    right = {**_loss_case(insert_right=True, slots_right=True), "logits": case["logits"]}
    parts = _act(right)
    assert parts.token_correct.tolist() == [[False, True, True], [False, False, True]]
    assert parts.seq_correct.tolist() == [True, True]


def test_invalid_rows_contribute_nothing():
    case = _loss_case()
    masked = _act(case, valid=(True, False), target=None)
    assert masked.label_mask.sum() == 2 and masked.q_continue == 0
    a = float(torch.log1p(3 * torch.exp(torch.tensor(-10.0))))
    ln2 = float(torch.log(torch.tensor(2.0)))
    assert abs(float(masked.lm) - 2 * (a + ln2) / 2) < 1e-5  # row 1's insertion is gone too
    assert masked.seq_correct.tolist() == [True, False]


def test_stablemax_is_a_distribution():
    logp = stablemax_log_probs(torch.randn(5, 7) * 10)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(5), atol=1e-5)
