"""Multimodal Temporal Transformer (paper section 3.4), as the authors' code builds it."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class TemporalAttention(nn.Module):
    """Multi-head attention with bias-free q and kv projections (authors' layout).

    Self-attention by default; with ``context`` the keys and values come from it instead
    (cross-attention, Table 3's MULT). The width is ``heads * head_dim``; the output is projected
    back to ``dim``."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.to_q(x)
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q, k, v = (t.view(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class TemporalFeedForward(nn.Module):
    """Linear, tanh-approximation GELU (authors' custom GELU), Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class TemporalLayer(nn.Module):
    """Pre-norm Transformer layer (LayerNorm eps 1e-5)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = TemporalAttention(dim, heads, head_dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = TemporalFeedForward(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))


class MultimodalTemporalTransformer(nn.Module):
    """A new CLS token and learned temporal embeddings (both ``randn``, std 1, as the authors'),
    then ``depth`` pre-norm layers; returns the CLS token. No final LayerNorm (authors' code).

    Args:
        num_steps: temporal length (16 frames); the embedding has num_steps + 1 rows.
    """

    def __init__(self, dim: int = 512, depth: int = 1, heads: int = 8, head_dim: int = 64,
                 mlp_dim: int = 1024, num_steps: int = 16):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_steps + 1, dim))
        self.layers = nn.ModuleList(TemporalLayer(dim, heads, head_dim, mlp_dim) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embed[:, : n + 1]
        for layer in self.layers:
            x = layer(x)
        return x[:, 0]
