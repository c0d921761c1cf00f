"""Inference: run every row from a fresh carry until it halts; return fp32 edit logits, the final
latent state the token head reads (`slot_logits` at chosen positions) and ACT stats.

Evaluation semantics: each row runs `max_steps` (default `halt_max_steps`) segments, or, with
`halt_on_q=True`, stops at the first segment where q_halt > q_continue; a halted row's outputs
are frozen at the segment where it halted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hrm.model.act import HRMAct


@dataclass
class InferenceOutput:
    logits: torch.Tensor
    """[B, L, V] float32 first-token logits (copy bias included) of the segment at which each
    row halted."""
    insert_logits: torch.Tensor
    """[B, L] float32: the position inserts tokens after its first."""
    z_H: torch.Tensor
    """[B, L, d] that segment's high-level state (what the heads read)."""
    q_halt: torch.Tensor
    """[B] fp32 halting logit at that segment."""
    q_continue: torch.Tensor
    """[B] fp32 continue logit at that segment."""
    steps: torch.Tensor
    """[B] int: segments each row ran."""
    gate_mean: float | None
    """Mean sigmoid gate of the reverse feedback path (None: no feedback; 0.0 when forced off)."""
    feedback_ratio: float | None
    """Mean ||feedback|| / ||z_H|| over the segments run (None: no feedback)."""


def unwrap(model: torch.nn.Module) -> HRMAct:
    """The HRMAct inside DDP / torch.compile wrappers."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    if not isinstance(inner, HRMAct):
        raise TypeError(f"expected an HRMAct model, got {type(inner).__name__}")
    return inner


@torch.no_grad()
def run_inference(
    model: torch.nn.Module,
    inputs: torch.Tensor | np.ndarray,
    *,
    max_steps: int | None = None,
    halt_on_q: bool = False,
    reverse_gate_off: bool = False,
) -> InferenceOutput:
    """Run `inputs` [B, L] (token ids) through the model; the model is put in eval mode."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    try:
        device = next(net.parameters()).device
        ids = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs).to(device)
        if ids.dim() != 2 or ids.shape[1] != net.seq_len:
            raise ValueError(f"inputs must be [B, {net.seq_len}], got {tuple(ids.shape)}")
        ids = ids.to(torch.int32)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= net.vocab_size):
            raise ValueError(f"token ids must lie in [0, {net.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        batch = ids.shape[0]
        limit = max_steps or net.cfg.halt_max_steps
        carry = net.initial_carry(batch, device)
        carry.inputs = ids
        carry.valid = torch.ones(batch, dtype=torch.bool, device=device)
        carry.halted.zero_()
        logits = q_halt = q_cont = steps = z_H = inserts = None
        ratios: list[float] = []
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        for _ in range(limit):
            out = net(carry, halt_on_q=halt_on_q, max_steps=limit, gate_off=reverse_gate_off)
            step_logits = out.logits.float()
            if logits is None:
                logits, q_halt, q_cont, steps = step_logits, out.q_halt, out.q_continue, out.steps.clone()
                z_H = out.carry.z_H.clone()
                inserts = out.insert_logits.float()
            else:
                live = ~done
                logits[live] = step_logits[live]
                z_H[live] = out.carry.z_H[live]
                inserts[live] = out.insert_logits.float()[live]
                q_halt = torch.where(live, out.q_halt, q_halt)
                q_cont = torch.where(live, out.q_continue, q_cont)
                steps = torch.where(live, out.steps, steps)
            if out.feedback_ratio is not None:
                ratios.append(float(out.feedback_ratio))
            done |= out.carry.halted
            carry = out.carry
            if bool(done.all()):
                break
        feedback = net.core.feedback
        if feedback is None:
            gate_mean = None
        else:
            gate_mean = 0.0 if reverse_gate_off else float(feedback.gate_value().mean())
        return InferenceOutput(
            logits=logits,
            insert_logits=inserts,
            z_H=z_H,
            q_halt=q_halt,
            q_continue=q_cont,
            steps=steps,
            gate_mean=gate_mean,
            feedback_ratio=(sum(ratios) / len(ratios)) if feedback is not None and ratios else None,
        )
    finally:
        net.train(was_training)


@torch.no_grad()
def slot_logits(model: torch.nn.Module, z_H: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
                ) -> torch.Tensor:
    """fp32 inserted-token logits [M, K - 1, V] after (rows[m], positions[m]) of an
    inference's `z_H`."""
    net = unwrap(model)
    if rows.numel() == 0:
        return torch.zeros(0, net.slots - 1, net.vocab_size)
    return net.core.slot_logits(z_H, rows.to(z_H.device), positions.to(z_H.device)).float()
