"""Non-causal multi-head self-attention with three interchangeable kernels.

`flash`: flash-attn's `flash_attn_func` (CUDA only, fp16/bf16); `sdpa`: torch's
scaled_dot_product_attention; `math`: the explicit softmax(QK^T/sqrt(d))V, kept as a readable
reference that the tests compare the fused kernels against. `auto` picks flash when it is
importable and the model lives on CUDA, else SDPA. flash-attn only takes fp16/bf16 tensors:
a call with fp32 q/k/v (fp32 training, evaluation outside autocast) is computed by SDPA, so
`precision: fp32` on a GPU with flash-attn installed works and means what it says.

With `model.mask_padding` the keys at padding positions take no part (a boolean key mask);
flash-attn's dense kernel takes no such mask, so `auto` then picks SDPA and `flash` is refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrm.model.layers import Linear, apply_rotary

HALF_DTYPES = (torch.float16, torch.bfloat16)

CPU_KERNEL_FP32 = True
"""On CPU, SDPA computes in fp32 when q/k/v come in bf16 (autocast), and casts back: torch's CPU
kernel is slower in bf16 at this model's head sizes (cpu profile, width 208: forward + backward
12.0 ms in bf16 against 8.1 ms in fp32; BENCHMARKS.md "Padding masked and trimmed"). It only rounds
less. The benchmarks switch it off to measure the bf16 kernel."""


def flash_available() -> bool:
    """True when flash-attn can be imported (it needs CUDA at call time as well)."""
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, device: torch.device | str, mask_padding: bool = False) -> str:
    """Turn the configured kernel into the one actually used; `flash` without CUDA, or with a
    padding mask, is an error."""
    on_cuda = torch.device(device).type == "cuda"
    if requested == "auto":
        return "flash" if (on_cuda and flash_available() and not mask_padding) else "sdpa"
    if requested == "flash" and not (on_cuda and flash_available()):
        raise ValueError("model.attention=flash needs the flash-attn package and a CUDA device")
    if requested == "flash" and mask_padding:
        raise ValueError("model.attention=flash takes no padding mask: set model.mask_padding: false "
                         "or model.attention: sdpa")
    return requested


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reference attention on [B, H, L, D] tensors, softmax in fp32; `key_mask` (bool, broadcast
    to [B, H, Lq, L]): the keys each query may attend to."""
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
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

    def _projection_weight(self) -> torch.Tensor:
        """The qkv weight with each head's q and k rows in adjacent RoPE pairs (row j, j + D/2 of
        the stored rotate-half layout become rows 2j, 2j + 1), v as stored.
        q.k is invariant under the common permutation, so the stored weights keep the reference
        layout and meaning. One 0.75 MiB copy per call (a transposed view and a cat, whose
        backward is a strided copy, unlike an index gather's scatter-add)."""
        heads, half = self.num_heads, self.head_dim // 2
        w = self.qkv.weight.view(3, heads, 2, half, -1)
        return torch.cat((w[:2].transpose(2, 3), w[2:].view(1, heads, half, 2, -1))).view(self.qkv.weight.shape)

    def project(self, x: torch.Tensor, rope: torch.Tensor):
        """q, k, v [B, L, H, D] of x [B, L, d], RoPE applied to q and k (whose channels come
        in adjacent-pair order, `_projection_weight`; the attention scores are unchanged)."""
        batch, seq_len, _ = x.shape
        qkv = F.linear(x, self._projection_weight()).view(batch, seq_len, 3, self.num_heads, self.head_dim)
        # split (not slicing + select): its backward is one cat, not zero-filled buffers plus adds.
        qk, v = qkv.split([2, 1], dim=2)
        # RoPE on q and k in one pass (half the elementwise kernel launches).
        q, k = apply_rotary(qk, rope).unbind(dim=2)  # each [B, L, H, D]
        return q, k, v.squeeze(2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of queries q [B, Lq, H, D] over k, v [B, L, H, D], projected: [B, Lq, d];
        `key_mask` (bool [B, 1, 1, L], `HRMCore.key_mask`): the keys that take part (padding
        does not)."""
        batch, n_q = q.shape[:2]
        if self.backend == "flash" and q.dtype in HALF_DTYPES:
            from flash_attn import flash_attn_func

            if key_mask is not None:  # build_model never pairs them; a direct caller gets told
                raise ValueError("the flash kernel takes no key mask (model.mask_padding needs sdpa or math)")

            out = flash_attn_func(q, k, v, causal=False)  # [B, Lq, H, D]
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
            if self.backend in ("sdpa", "flash"):  # flash with fp32 inputs: see module doc
                if CPU_KERNEL_FP32 and q.device.type == "cpu" and q.dtype == torch.bfloat16:
                    with torch.autocast("cpu", enabled=False):  # autocast would cast them back
                        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                             attn_mask=key_mask, is_causal=False).to(q.dtype)
                else:
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=False)
            else:
                out = math_attention(q, k, v, key_mask)
            out = out.transpose(1, 2)
        return self.out(out.reshape(batch, n_q, -1))

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, rows: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention output [B, L, d]; with `rows` (position indices), only those query
        positions are computed (keys and values still cover every position): [B, len(rows), d]."""
        q, k, v = self.project(x, rope)
        if rows is not None:
            q = q.index_select(1, rows)
        return self.attend(q, k, v, key_mask)
