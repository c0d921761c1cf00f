"""Non-causal multi-head self-attention with three interchangeable kernels.

`flash`: flash-attn's `flash_attn_func` (CUDA only, fp16/bf16); `sdpa`: torch's
scaled_dot_product_attention; `math`: the explicit softmax(QK^T/sqrt(d))V, kept as a readable
reference that the tests compare the fused kernels against. `auto` picks flash when it is
importable and the model lives on CUDA, else SDPA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrm.model.layers import Linear, apply_rotary


def flash_available() -> bool:
    """True when flash-attn can be imported (it needs CUDA at call time as well)."""
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """Turn the configured kernel into the one actually used; `flash` without CUDA is an error."""
    on_cuda = torch.device(device).type == "cuda"
    if requested == "auto":
        return "flash" if (on_cuda and flash_available()) else "sdpa"
    if requested == "flash" and not (on_cuda and flash_available()):
        raise ValueError("model.attention=flash needs the flash-attn package and a CUDA device")
    return requested


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference attention on [B, H, L, D] tensors, softmax in fp32."""
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])
    return (scores.softmax(dim=-1).to(v.dtype)) @ v


class Attention(nn.Module):
    """Fused QKV projection, RoPE on queries and keys, non-causal attention, output projection."""

    def __init__(self, hidden_size: int, num_heads: int, backend: str):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = Linear(hidden_size, 3 * hidden_size)
        self.out = Linear(hidden_size, hidden_size)
        self.backend = backend
        """Kernel in use; a plain attribute so tests can switch it on the same weights."""

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, self.head_dim)
        # RoPE on q and k in one pass (half the elementwise kernel launches).
        q, k = apply_rotary(qkv[:, :, :2], cos, sin).unbind(dim=2)  # each [B, L, H, D]
        v = qkv[:, :, 2]
        if self.backend == "flash":
            from flash_attn import flash_attn_func

            out = flash_attn_func(q, k, v, causal=False)  # [B, L, H, D]
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
            if self.backend == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v, is_causal=False)
            else:
                out = math_attention(q, k, v)
            out = out.transpose(1, 2)
        return self.out(out.reshape(batch, seq_len, -1))
