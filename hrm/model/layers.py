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
    """Precomputed RoPE table [seq_len, head_dim / 2, 2]: (cos, sin) of each position's angle
    for each frequency (a non-persistent buffer)."""

    def __init__(self, head_dim: int, seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        self.register_buffer("table", torch.stack((freqs.cos(), freqs.sin()), dim=-1), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table


def apply_rotary(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, ..., D] (e.g. [B, L, H, D], or [B, L, 2, H, D] for q and k at once) by
    position, pairing ADJACENT channels (2j, 2j + 1) as the complex number x_2j + i x_2j+1 and
    multiplying it by exp(i * angle_j): one complex multiply instead of the four kernels of
    `x * cos + rotate_half(x) * sin`. That is rotate-half RoPE on channels permuted so that
    channel j and j + D/2 become 2j and 2j + 1 (the attention permutes its q and k projection
    rows accordingly, which leaves q.k, hence the model, unchanged). rope: `RotaryEmbedding()`, [>= L, D/2, 2]."""
    shape = (x.shape[1],) + (1,) * (x.dim() - 3) + (x.shape[-1] // 2,)
    rot = torch.view_as_complex(rope[: x.shape[1]]).view(shape)
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)


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
