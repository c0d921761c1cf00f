"""Building blocks of the HRM: scaled embedding, RoPE, parameter-free RMSNorm, SwiGLU.

Follows the HRM reference implementation (arXiv 2506.21734): truncated-normal (LeCun) init,
no biases, POST-norm blocks (`x = norm(x + f(x))`), RMSNorm computed in fp32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Truncated normal at +-2 std (the reference's LeCun-normal style init)."""
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free RMSNorm in fp32 (bf16 variance is too coarse), cast back to x's dtype.

    mean(x^2) is taken as ||x||^2 / d: one fused reduction kernel instead of pow + mean over the
    full tensor (the rest works on the [..., 1] statistics)."""
    dtype = x.dtype
    x32 = x.float()
    norm = torch.linalg.vector_norm(x32, dim=-1, keepdim=True)
    x32 = x32 * torch.rsqrt(norm.square() / x32.shape[-1] + eps)
    return x32.to(dtype)


class Linear(nn.Module):
    """Bias-free linear layer with LeCun truncated-normal init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), 1.0 / math.sqrt(in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class ScaledEmbedding(nn.Module):
    """Token embedding initialised with std 1/sqrt(d) and multiplied by sqrt(d) on use, so the
    injected input has unit scale like the normalised latent states it is added to."""

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.scale = math.sqrt(hidden_size)
        self.weight = nn.Parameter(trunc_normal_(torch.empty(vocab_size, hidden_size), 1.0 / self.scale))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight) * self.scale


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE cos/sin tables, [seq_len, head_dim] each (non-persistent buffers)."""

    def __init__(self, head_dim: int, seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        # sin with rotate_half's sign folded in: rotate_half(x) * sin == swap_halves(x) * signed_sin.
        self.register_buffer("signed_sin", torch.cat((-freqs.sin(), freqs.sin()), dim=-1), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.signed_sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, signed: bool = True) -> torch.Tensor:
    """Rotate x [B, L, ..., D] (e.g. [B, L, H, D], or [B, L, 2, H, D] for q and k at once) by
    position; cos/sin are [L, D]. `signed` (what `RotaryEmbedding()` returns): `sin` already
    carries rotate_half's sign (-sin on the first half), which saves a negation kernel;
    `signed=False` takes the plain sin table (`RotaryEmbedding.sin`)."""
    shape = (x.shape[1],) + (1,) * (x.dim() - 3) + (x.shape[-1],)
    cos = cos[: x.shape[1]].to(x.dtype).view(shape)
    sin = sin[: x.shape[1]].to(x.dtype).view(shape)
    if not signed:
        return x * cos + _rotate_half(x) * sin
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, x1), dim=-1) * sin


def _multiple_of(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


class SwiGLU(nn.Module):
    """SwiGLU MLP; the inner width is expansion * d * 2/3 (same parameters as a 4x GELU MLP),
    rounded up to a multiple of 64 for matmul efficiency."""

    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        inner = _multiple_of(expansion * hidden_size * 2 / 3, 64)
        self.gate_up = Linear(hidden_size, 2 * inner)
        self.down = Linear(inner, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
