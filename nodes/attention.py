"""Multi-head attention through one function: xformers' memory-efficient kernel on CUDA when it
is installed, `torch.nn.functional.scaled_dot_product_attention` otherwise (xformers has no CPU
kernels; DESIGN §6)."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.cache
def _xformers():
    try:
        import xformers.ops as xops
    except ImportError:
        return None
    return xops


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
    """softmax(q kᵀ / √d) v for (B, heads, L, d) tensors, no mask."""
    if q.is_cuda and (xops := _xformers()) is not None:
        # xformers wants (B, L, heads, d)
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), p=dropout)
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
