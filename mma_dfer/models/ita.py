"""Table 2's intermediate temporal adaptors (ITA, paper section 4.4), one after every fusion block.

"Temporal self-attention over [CLS] tokens of every frame", "fused back to the vision branch",
"similar to TMA [8]". The authors did not release them; the design below is ours, chosen to
follow the text and to reproduce what Table 2's Params column allows (see docs/model.md).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from mma_dfer.models.fusion import gated_add
from mma_dfer.models.temporal import TemporalAttention


class IntermediateTemporalAdaptor(nn.Module):
    """Self-attention over the frames' CLS tokens of each clip, in a ``width``-d space, added to
    every token of each frame through a tanh gate initialised at 0 (the FB's gate).

    Per clip: the T CLS tokens are projected down (Linear + LayerNorm, the FB's G_V), optionally
    get learned temporal embeddings, then LayerNorm and multi-head attention (the MTT's layout),
    and the result per frame is expanded back (Linear + GELU, the FB's F_V) and added to that
    frame's tokens. Without temporal embeddings (the default: the paper names none, and Table 2's
    Params leave no room for them at d=64) the attention sees the frames as a set, not in order.

    The paper: the width-128 ITA needs no projection layers of its own because the Fusion
    Bottleneck's latent width is already 128. So with ``projections`` (the block's FB ``video_down``
    and ``video_up``) the adaptor works in the FB's latent space through those same layers, which
    it uses but does not own (their parameters stay the FB's); without, it has its own.

    Args:
        dim: encoder width (768).
        width: d of Table 2 (64/128/256).
        heads: attention heads (width must be a multiple).
        num_frames: T, the rows of the temporal embedding.
        temporal_embed: learned temporal embeddings (``randn``, as the MTT's), one per frame.
        projections: (down, up) modules to share, or None to build them.
    """

    def __init__(self, dim: int, width: int, heads: int, num_frames: int, temporal_embed: bool = False,
                 projections: Optional[tuple[nn.Module, nn.Module]] = None):
        super().__init__()
        if projections is None:
            self.down = nn.Sequential(nn.Linear(dim, width), nn.LayerNorm(width))
            self.up = nn.Sequential(nn.Linear(width, dim), nn.GELU())
            projections = (self.down, self.up)
        # a tuple is not registered by nn.Module: shared layers stay out of this module's
        # parameters and state dict, and the FB's keys (and the authors' import) stay as they are
        self.projections = projections
        self.pos_embed = nn.Parameter(torch.randn(1, num_frames, width)) if temporal_embed else None
        self.norm = nn.LayerNorm(width)
        self.attn = TemporalAttention(width, heads, width // heads)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, video: torch.Tensor, audio: Optional[torch.Tensor], num_frames: int):
        """video: (B*T, Nv, D), sample-major; audio passes through."""
        down, up = self.projections
        bt, _, dim = video.shape
        cls = video[:, 0].to(self.gate.dtype)
        z = down(cls).view(bt // num_frames, num_frames, -1)
        if self.pos_embed is not None:
            z = z + self.pos_embed[:, :num_frames]
        per_frame = up(self.attn(self.norm(z))).reshape(bt, 1, dim)
        return gated_add(video, self.gate, per_frame), audio


def build_ita(cfg, fusion: Optional[nn.ModuleList], num_frames: int) -> Optional[nn.ModuleList]:
    """One adaptor per encoder block for ``cfg.ita_dim`` (None when 0). It shares the FB's
    projections when ``ita_dim == fusion_dim`` and the fusion is the bottleneck."""
    if not cfg.ita_dim:
        return None
    share = cfg.fusion == "bottleneck" and cfg.ita_dim == cfg.fusion_dim
    return nn.ModuleList(
        IntermediateTemporalAdaptor(cfg.embed_dim, cfg.ita_dim, cfg.ita_heads, num_frames, cfg.ita_temporal_embed,
                                    (fusion[i].video_down, fusion[i].video_up) if share else None)
        for i in range(cfg.depth))
