"""The HRM core: two recurrent modules (H: slow planning, L: fast computation) and heads.

One forward call is one ACT *segment*: H_cycles x L_cycles updates with input injection
(L sees z_L + z_H + x, H sees z_H + z_L), of which only the last L update and the last H update
are tracked by autograd (the paper's one-step gradient approximation); all earlier updates run
under `torch.no_grad()`. The returned carry is detached, so no gradient flows between segments.

`architecture: trm` replaces H and L by one shared network (Tiny Recursive Model style): the
last full recursion (L_cycles updates of z_L then one update of z_H) carries the gradient.

Heads (see docs/sequences.md): one token head reads z_H plus a learned slot embedding. At every
position it gives the first token of the position's output, with a learned *copy bias* added to
the logit of the token the position holds: keeping a token is the head's starting point (the
untrained model copies its input), so learning goes to the fixes. The insert head gives, per
position, the logit that the position also inserts tokens after it; the token head gives those
K - 1 tokens only where the caller asks (the labelled insertions in training, the likely ones at
inference).

Optional reverse feedback: after each H update, z_H += sigmoid(gate) * W z_L, a gated path from
the low-level state into the high-level one. The gate is observable (`gate_value`) and can be
forced to zero (`gate_off`), which makes the model compute exactly what a no-feedback model with
the same remaining weights computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrm.config import ModelConfig
from hrm.model.attention import Attention
from hrm.model.layers import (
    Linear,
    RotaryEmbedding,
    ScaledEmbedding,
    SwiGLU,
    rms_norm,
    trunc_normal_,
)


class Block(nn.Module):
    """Post-norm transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, cfg: ModelConfig, backend: str):
        super().__init__()
        self.attn = Attention(cfg.hidden_size, cfg.num_heads, backend)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)
        self.eps = cfg.rms_norm_eps

    def _tail(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        x = rms_norm(x + attn, self.eps)
        return rms_norm(x + self.mlp(x), self.eps)

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, rows: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, L, d]; with `rows` (position indices) only those output positions: [B, len(rows), d]
        (every position still serves as key and value, but those `key_mask` leaves out)."""
        if rows is None:
            return self._tail(x, self.attn(x, rope, key_mask=key_mask))
        return self._tail(x.index_select(1, rows), self.attn(x, rope, rows, key_mask))

    def forward_split(
        self, x: torch.Tensor, rope: torch.Tensor, rows: torch.Tensor, rest: torch.Tensor,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The full output [B, L, d], equal to `forward(x)`, of which only positions `rows` are
        differentiated; positions `rest` (the others) are computed without autograd. Used where
        the loss reads only `rows`: the backward of attention, MLP and norms shrinks to them."""
        q, k, v = self.attn.project(x, rope)
        y = self._tail(x.index_select(1, rows), self.attn.attend(q.index_select(1, rows), k, v, key_mask))
        with torch.no_grad():
            y_rest = self._tail(x.index_select(1, rest), self.attn.attend(q.index_select(1, rest), k, v, key_mask))
            full = y_rest.new_empty(x.shape).index_copy_(1, rest, y_rest)
        return full.index_copy(1, rows, y)


class ReasoningModule(nn.Module):
    """A stack of blocks updating a latent state given an injection: z <- blocks(z + injection).

    `rows` (position indices) restricts the LAST block's output to those positions (the earlier
    blocks feed its keys and values, so they run in full); with `rest` as well (the other
    positions) the output is full but only `rows` is differentiated (`Block.forward_split`).
    `key_mask`: the keys that take part in attention (`HRMCore.key_mask`; None: all)."""

    def __init__(self, cfg: ModelConfig, layers: int, backend: str):
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg, backend) for _ in range(layers))

    def forward(
        self,
        z: torch.Tensor,
        injection: torch.Tensor,
        rope: torch.Tensor,
        rows: torch.Tensor | None = None,
        rest: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = z + injection
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i < last or rows is None:
                h = layer(h, rope, key_mask=key_mask)
            elif rest is None:
                h = layer(h, rope, rows, key_mask)
            else:
                h = layer.forward_split(h, rope, rows, rest, key_mask)
        return h


PAD_ID = 0
"""The padding token's id (`hrm.tokenizer`: the first special token); rows are padded at the end."""

FEEDBACK_SEED_OFFSET = 7919
"""The feedback path's weights come from torch.manual_seed(initial seed + this)."""


class ReverseFeedback(nn.Module):
    """Gated L -> H path: returns sigmoid(gate) * W z_L (scalar or per-channel gate)."""

    def __init__(self, hidden_size: int, per_channel: bool, init_logit: float):
        super().__init__()
        self.proj = Linear(hidden_size, hidden_size)
        self.gate_logit = nn.Parameter(torch.full((hidden_size if per_channel else 1,), float(init_logit)))

    def gate_value(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logit.float())

    def forward(self, z_L: torch.Tensor) -> torch.Tensor:
        return self.gate_value().to(z_L.dtype) * self.proj(z_L)


class CopyHead(nn.Module):
    """Mixes a copy distribution into the first-token distribution (pointer-generator):
    p(t) = (1 - g) softmax(logits)(t) + g * sum over positions j holding t of softmax_j(q_i . k_j),
    g = sigmoid(gate(z_i)). Returns log-probabilities (fp32), which every consumer of logits
    (cross-entropy, log_softmax, argmax) reads unchanged."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.query = Linear(hidden_size, hidden_size)
        self.key = Linear(hidden_size, hidden_size)
        self.gate = Linear(hidden_size, 1, bias=True)
        with torch.no_grad():
            self.gate.weight.zero_()
            self.gate.bias.fill_(-2.0)  # start mostly on the token head (copy bias included)

    def forward(self, logits: torch.Tensor, zp: torch.Tensor, z_H: torch.Tensor, inputs: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`logits` [B, P, V] of states `zp` [B, P, d]; keys `z_H` [B, L, d] at tokens `inputs` [B, L]
        (those `key_mask` [B, 1, 1, L] leaves out, padding, copy nothing)."""
        scores = torch.einsum("bpd,bld->bpl", self.query(zp), self.key(z_H)).float() / zp.shape[-1] ** 0.5
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask.view(key_mask.shape[0], 1, -1), float("-inf"))
        top = scores.amax(-1, keepdim=True)
        weights = (scores - top).exp()
        index = inputs.long().unsqueeze(1).expand(-1, zp.shape[1], -1)
        mass = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device).scatter_add(-1, index, weights)
        copy_lp = mass.clamp_min(1e-30).log() - weights.sum(-1, keepdim=True).log()
        gate = self.gate(zp).float()
        return torch.logaddexp(torch.log_softmax(logits.float(), -1) + F.logsigmoid(-gate),
                               copy_lp + F.logsigmoid(gate))


@dataclass
class SegmentOutput:
    """What one segment produces. z_H/z_L are detached (the next segment's carry)."""

    z_H: torch.Tensor | None
    z_L: torch.Tensor | None
    """None with `carry_out=False`."""
    logits: torch.Tensor | None
    """First-token logits [B, L, V] (or [B, hi-lo, V] with `head_span`; None with
    `lm_head=False`), copy bias included, in the autocast dtype (losses upcast to fp32)."""
    insert_logits: torch.Tensor | None
    """[B, L] (or [B, hi-lo]): the position inserts tokens after its first."""
    slot_logits: torch.Tensor | None
    """[M, K - 1, V] inserted-token logits of the `slot_positions` entries that are >= 0
    (row-major order), None when none were asked."""
    q_halt: torch.Tensor
    """[B] fp32 logit of "halt now"."""
    q_continue: torch.Tensor
    """[B] fp32 logit of "continue"."""
    feedback_ratio: torch.Tensor | None
    """Scalar: mean ||feedback|| / ||z_H|| over the segment's H updates (None: no feedback)."""
    prefix: tuple[torch.Tensor, torch.Tensor] | None = None
    """(z_H, z_L) after the no-grad prefix (only with `return_prefix`)."""


class HRMCore(nn.Module):
    """Embedding, the recurrent modules, the LM head on z_H and the Q head on position 0."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, backend: str, slots: int = 4):
        super().__init__()
        self.cfg = cfg
        self.slots = slots
        d = cfg.hidden_size
        self.embed = ScaledEmbedding(vocab_size, d)
        self.rope = RotaryEmbedding(d // cfg.num_heads, seq_len, cfg.rope_theta)
        self.positions = (
            nn.Parameter(trunc_normal_(torch.empty(seq_len, d), 1.0 / d**0.5)) if cfg.learned_positions else None
        )
        if cfg.architecture == "hrm":
            self.H = ReasoningModule(cfg, cfg.H_layers, backend)
            self.L = ReasoningModule(cfg, cfg.L_layers, backend)
        else:
            # TRM: one shared network plays both roles; H_layers is ignored.
            self.L = ReasoningModule(cfg, cfg.L_layers, backend)
            self.H = self.L
        self.feedback = None
        if cfg.reverse_feedback:
            # Drawn from a stream of its own, so every other weight, and every draw of torch's
            # RNG after the build, is the same with or without this path: the control model of
            # the reverse-learning ablation (feedback off) differs from the model in it alone.
            # (CPU stream only: the weights are drawn on the CPU, and torch.manual_seed would
            # also reseed CUDA, which fork_rng(devices=[]) does not put back.)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(torch.initial_seed() + FEEDBACK_SEED_OFFSET)
                self.feedback = ReverseFeedback(d, cfg.reverse_gate == "channel", cfg.reverse_gate_init)
        self.token_head = Linear(d, vocab_size)
        self.slot_embed = nn.Parameter(trunc_normal_(torch.empty(slots, d), 1.0 / d**0.5))
        # The own token's logit gets this bias: exp(6) ~ 400 times the other tokens' mass at
        # init, so the untrained model keeps every token.
        self.copy_bias = nn.Parameter(torch.tensor(6.0))
        self.insert_head = Linear(d, 1, bias=True)
        self.copy_head = CopyHead(d) if cfg.copy_head else None
        self.q_head = Linear(d, 2, bias=True)
        with torch.no_grad():
            # Insertions are rare (about one position in a hundred): start there.
            self.insert_head.weight.zero_()
            self.insert_head.bias.fill_(-5.0)
            # Q head starts near zero weights with bias -5: the model initially prefers to continue
            # (sigmoid(-5) ~ 0.007), which stabilises early Q-learning (reference init).
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        # Initial latent states (fixed random vectors, not trained), broadcast over batch and length.
        self.register_buffer("H_init", trunc_normal_(torch.empty(d), 1.0), persistent=True)
        self.register_buffer("L_init", trunc_normal_(torch.empty(d), 1.0), persistent=True)

    def first_logits(self, z_H: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """First-token logits [..., V] of states z_H [..., d] whose positions hold tokens `own`
        [...]: the token head on slot 0, plus the copy bias on each position's own token."""
        q = rms_norm(z_H + self.slot_embed[0].to(z_H.dtype), self.cfg.rms_norm_eps)
        logits = self.token_head(q)
        bias = self.copy_bias.to(logits.dtype).expand(own.shape).unsqueeze(-1)
        return logits.scatter_add(-1, own.long().unsqueeze(-1), bias)

    def slot_logits(self, z_H: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Inserted-token logits [M, K - 1, V] after the positions (rows[m], positions[m])."""
        h = z_H[rows, positions]  # [M, d]
        q = rms_norm(h.unsqueeze(1) + self.slot_embed[1:].to(h.dtype), self.cfg.rms_norm_eps)
        return self.token_head(q)

    def set_attention_backend(self, backend: str) -> None:
        """Switch the attention kernel of every block (weights unchanged)."""
        for module in self.modules():
            if isinstance(module, Attention):
                module.backend = backend

    def initial_state(self, batch: int, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, seq_len, self.cfg.hidden_size)
        return self.H_init.to(device).expand(shape).clone(), self.L_init.to(device).expand(shape).clone()

    def reset_rows(self, reset: torch.Tensor, z_H: torch.Tensor, z_L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows where `reset` is true restart from the initial states."""
        mask = reset.view(-1, 1, 1)
        return torch.where(mask, self.H_init.to(z_H.dtype), z_H), torch.where(mask, self.L_init.to(z_L.dtype), z_L)

    def key_mask(self, inputs: torch.Tensor) -> torch.Tensor | None:
        """With `mask_padding`: bool [B, 1, 1, L], the positions attention reads (not padding;
        position 0, the row's first token, always, so a row of padding still has a key). None
        without: every position takes part, padding included (what models trained before the
        option compute)."""
        if not self.cfg.mask_padding:
            return None
        mask = inputs != PAD_ID
        mask[:, 0] = True
        return mask.view(inputs.shape[0], 1, 1, inputs.shape[1])

    def _update_H(self, z_H, z_L, rope, gate_off: bool, ratios: list[torch.Tensor], rows=None, rest=None,
                  key_mask=None):
        """One H update; `rows`/`rest` as in `ReasoningModule` (rows alone: the new z_H holds
        those positions only)."""
        z_H = self.H(z_H, z_L, rope, rows, rest, key_mask)
        if self.feedback is not None and not gate_off:
            fb = self.feedback(z_L if rows is None or rest is not None else z_L.index_select(1, rows))
            with torch.no_grad():
                ratios.append((fb.float().norm(dim=-1) / z_H.float().norm(dim=-1).clamp_min(1e-6)).mean())
            z_H = z_H + fb
        elif self.feedback is not None:
            ratios.append(torch.zeros((), device=z_H.device))
        return z_H

    def _prefix(self, z_H, z_L, x, rope, n_H: int, n_L: int, gate_off: bool, ratios: list, key_mask=None):
        """The no-grad part of a segment: every update except the differentiated last ones."""
        with torch.no_grad():
            if self.cfg.architecture == "hrm":
                for h in range(n_H):
                    for l_step in range(n_L):
                        if h == n_H - 1 and l_step == n_L - 1:
                            break  # the very last L update is taken with gradient
                        z_L = self.L(z_L, z_H + x, rope, key_mask=key_mask)
                    if h < n_H - 1:
                        z_H = self._update_H(z_H, z_L, rope, gate_off, ratios, key_mask=key_mask)
            else:
                for _ in range(n_H - 1):
                    for _ in range(n_L):
                        z_L = self.L(z_L, z_H + x, rope, key_mask=key_mask)
                    z_H = self._update_H(z_H, z_L, rope, gate_off, ratios, key_mask=key_mask)
        return z_H, z_L

    def _final(self, z_H, z_L, x, rope, n_L: int, gate_off: bool, ratios: list, rows=None, rest=None,
               key_mask=None):
        """The differentiated end of a segment (HRM: last L and H update; TRM: last recursion)."""
        for _ in range(1 if self.cfg.architecture == "hrm" else n_L):
            z_L = self.L(z_L, z_H + x, rope, key_mask=key_mask)
        return self._update_H(z_H, z_L, rope, gate_off, ratios, rows, rest, key_mask), z_L

    @staticmethod
    def _head_rows(seq_len: int, span: tuple[int, int], device: torch.device):
        """(rows, rest): the positions the heads read (0 for the Q head, `span` for the LM head)
        and the others, or (None, None) when the others are too few to be worth a split."""
        lo, hi = span
        rows = torch.arange(lo, hi, device=device)
        if lo > 0:
            rows = torch.cat((torch.zeros(1, dtype=rows.dtype, device=device), rows))
        if 4 * (seq_len - rows.numel()) < seq_len:
            return None, None
        keep = torch.ones(seq_len, dtype=torch.bool, device=device)
        keep[rows] = False
        return rows, keep.nonzero().flatten()

    def embed_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Token embeddings (plus learned positions when on) [B, L, d]."""
        x = self.embed(inputs)
        if self.positions is not None:
            x = x + self.positions[: inputs.shape[1]].to(x.dtype) * self.embed.scale
        return x

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, inputs: torch.Tensor, *,
                L_cycles: int | None = None, gate_off: bool = False) -> SegmentOutput:
        """One segment from carry (z_H, z_L) on token ids `inputs` [B, L], the math plainly:

            x = embed(inputs)
            (with `mask_padding`, attention reads no padding position: `key_mask`)
            without gradient: every L and H update but the last ones   (`_prefix`)
            with gradient:    z_L = L(z_L, z_H + x); z_H = H(z_H, z_L) (+ gated feedback)
            first-token and insert heads on every position; Q head on position 0

        (the one-step gradient approximation: only the last updates are differentiated).
        `segment` computes the same with the training speed-ups (heads on the label columns, a
        sampled set of positions, the bootstrap segment's reused prefix, Q-only segments), tested
        equal in tests/model/test_speedups.py.
        """
        cfg = self.cfg
        n_L = L_cycles or cfg.L_cycles
        rope = self.rope()
        x = self.embed_inputs(inputs)
        mask = self.key_mask(inputs)
        ratios: list[torch.Tensor] = []
        z_H, z_L = self._prefix(z_H, z_L, x, rope, cfg.H_cycles, n_L, gate_off, ratios, mask)
        z_H, z_L = self._final(z_H, z_L, x, rope, n_L, gate_off, ratios, key_mask=mask)
        logits = self.first_logits(z_H, inputs)
        if self.copy_head is not None:
            logits = self.copy_head(logits, z_H, z_H, inputs, mask)
        inserts = self.insert_head(z_H).squeeze(-1)
        q = self.q_head(z_H[:, 0]).float()
        ratio = torch.stack(ratios).mean() if ratios else None
        return SegmentOutput(z_H.detach(), z_L.detach(), logits, inserts, None, q[:, 0], q[:, 1],
                             ratio, None)

    def segment(
        self,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        inputs: torch.Tensor,
        *,
        L_cycles: int | None = None,
        gate_off: bool = False,
        head_span: tuple[int, int] | None = None,
        lm_head: bool = True,
        primed: torch.Tensor | None = None,
        return_prefix: bool = False,
        carry_out: bool = True,
        slot_positions: torch.Tensor | None = None,
        head_positions: torch.Tensor | None = None,
    ) -> SegmentOutput:
        """`forward` with the training speed-ups (all off: the same as `forward`).

        `head_span=(lo, hi)`: the first-token and insert heads run on positions [lo, hi) only
        (logits [B, hi-lo, V]); training passes the span of the batch's label columns (the
        statement never has labels, so the loss is unchanged). `lm_head=False`: no logits at
        all (the bootstrap segment only needs the Q head). `slot_positions` [B, E] (-1: none):
        the inserted tokens after these positions (`SegmentOutput.slot_logits`).
        `head_positions` [B, P] (-1: none): the first-token and insert heads run on these
        positions only (logits [B, P, V]; training's sample of positions, inside `head_span`).
        `primed` (bool [B]): rows whose (z_H, z_L) already are this segment's no-grad prefix
        state (`return_prefix` of the previous bootstrap segment); the prefix runs on the other
        rows only. `return_prefix`: also return the state after the no-grad prefix.
        `carry_out=False` (only with `lm_head=False`): the caller needs the Q values only, so the
        last block of the final H update runs on position 0 alone (its keys and values still
        cover every position) and the output's z_H and z_L are None.

        Under autograd with `head_span` (or `lm_head=False`), the last block of the final H
        update differentiates only the positions the heads read (`Block.forward_split`): the
        same values and gradients, with a smaller backward.
        """
        if not carry_out and lm_head:
            raise ValueError("carry_out=False needs lm_head=False")
        cfg = self.cfg
        n_L = L_cycles or cfg.L_cycles
        n_H = cfg.H_cycles
        rope = self.rope()  # [L, head_dim / 2, 2]
        x = self.embed_inputs(inputs)
        mask = self.key_mask(inputs)
        ratios: list[torch.Tensor] = []
        if primed is None or not bool(primed.any()):
            z_H, z_L = self._prefix(z_H, z_L, x, rope, n_H, n_L, gate_off, ratios, mask)
        elif not bool(primed.all()):
            todo = (~primed).nonzero().flatten()
            sub_H, sub_L = self._prefix(z_H[todo], z_L[todo], x[todo], rope, n_H, n_L, gate_off, ratios,
                                        None if mask is None else mask[todo])
            z_H, z_L = z_H.index_copy(0, todo, sub_H), z_L.index_copy(0, todo, sub_L)
        prefix = (z_H.detach(), z_L.detach()) if return_prefix else None
        rows = rest = None
        seq_len = inputs.shape[1]
        if not carry_out:
            rows = torch.zeros(1, dtype=torch.long, device=inputs.device)
        elif torch.is_grad_enabled() and (head_span is not None or not lm_head):
            rows, rest = self._head_rows(seq_len, head_span if lm_head else (0, 1), inputs.device)
        z_H, z_L = self._final(z_H, z_L, x, rope, n_L, gate_off, ratios, rows, rest, mask)
        logits = inserts = slots = None
        if lm_head:
            if head_positions is not None:
                idx = head_positions.clamp_min(0)
                zp = z_H.gather(1, idx.unsqueeze(-1).expand(-1, -1, z_H.shape[-1]))
                own = inputs.gather(1, idx)
            else:
                lo, hi = head_span if head_span is not None else (0, seq_len)
                zp, own = z_H[:, lo:hi], inputs[:, lo:hi]
            logits = self.first_logits(zp, own)
            if self.copy_head is not None:
                logits = self.copy_head(logits, zp, z_H, inputs, mask)
            inserts = self.insert_head(zp).squeeze(-1)
            if slot_positions is not None:
                rows_m, cols_m = (slot_positions >= 0).nonzero(as_tuple=True)
                if rows_m.numel():
                    slots = self.slot_logits(z_H, rows_m, slot_positions[rows_m, cols_m])
        q = self.q_head(z_H[:, 0]).float()
        ratio = torch.stack(ratios).mean() if ratios else None
        if not carry_out:
            return SegmentOutput(None, None, logits, inserts, slots, q[:, 0], q[:, 1], ratio, prefix)
        return SegmentOutput(z_H.detach(), z_L.detach(), logits, inserts, slots, q[:, 0], q[:, 1], ratio,
                             prefix)
