"""Table 3's alternatives to the Fusion Bottleneck (paper section 4.5), and the per-block builder.

The paper describes them in one line each and the authors did not release them, so each design
choice below is ours and is listed in docs/model.md. All share the Fusion Bottleneck's call,
``forward(video (B*T, Nv, D), audio (B, Na, D), num_frames) -> (video, audio)``, read the
pre-exchange values of both modalities (a simultaneous exchange, as the FB), and add their result
to *every* token through a tanh gate initialised at 0, as the FB does, so that every variant starts
training from the unimodal encoders and differs from the FB only in how it mixes the modalities.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from mma_dfer.models.fusion import FusionBottleneck, gated_add
from mma_dfer.models.temporal import TemporalAttention, TemporalLayer


def clip_tokens(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, Nv, D) frames, sample-major, as (B, T*Nv, D): all tokens of all frames of one clip."""
    bt, nv, d = video.shape
    return video.reshape(bt // num_frames, num_frames * nv, d)


class AddFusion(nn.Module):
    """Table 3 "ADD": the FB's exchange in the original 768-d space, without compression and
    expansion: each modality gets the other's global mean (audio: over all its tokens; video:
    over all tokens of all frames of the clip) added to every token through the gate. The FB's own-token term
    (eq. 4, ``V_hat + L_a``) is left out: without F_V it would only rescale the stream by
    ``1 + tanh(alpha)``. Parameters: the two gates."""

    def __init__(self):
        super().__init__()
        self.video_gate = nn.Parameter(torch.zeros(1))
        self.audio_gate = nn.Parameter(torch.zeros(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor, num_frames: int):
        a_global = audio.mean(1, keepdim=True).repeat_interleave(num_frames, dim=0)
        v_global = clip_tokens(video, num_frames).mean(1, keepdim=True)
        return gated_add(video, self.video_gate, a_global), gated_add(audio, self.audio_gate, v_global)


class CrossModalAttention(nn.Module):
    """One direction of MulT [45]: the query modality's tokens attend to the other modality's
    tokens (both LayerNormed first, as MulT's crossmodal attention), at ``width`` total over
    ``heads`` heads, projected back to ``dim`` and added to the query modality through a gate.
    Attention only, no feed-forward: the paper adds the attention outputs to the branches."""

    def __init__(self, dim: int, width: int, heads: int):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim)
        self.attn = TemporalAttention(dim, heads, width // heads)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        dtype = self.gate.dtype
        update = self.attn(self.query_norm(x.to(dtype)), self.context_norm(context.to(dtype)))
        return gated_add(x, self.gate, update)


class MultFusion(nn.Module):
    """Table 3 "MULT": audio-to-vision and vision-to-audio cross-attention (2 heads, width 128).

    Audio to vision: every token of every frame queries the clip's audio tokens (the whole
    spectrogram). Vision to audio: every audio token queries all tokens of all frames of its clip
    in one softmax (the FB's video mean is also over the whole clip)."""

    def __init__(self, dim: int, width: int, heads: int):
        super().__init__()
        self.audio_to_video = CrossModalAttention(dim, width, heads)
        self.video_to_audio = CrossModalAttention(dim, width, heads)

    def forward(self, video: torch.Tensor, audio: torch.Tensor, num_frames: int):
        clip = clip_tokens(video, num_frames)
        # per-query softmax, so a clip's frames can query the same audio together
        new_video = self.audio_to_video(clip, audio).view(video.shape)
        return new_video, self.video_to_audio(audio, clip)


class ConcatFusion(nn.Module):
    """Table 3 "MULT-concat": one Transformer layer over the concatenation of a clip's video
    tokens (all frames) and audio tokens, its output mean-pooled over all of them, and that one
    vector added back to every token of each branch.

    The encoders' spaces differ, so each modality is first projected to ``width`` by its own
    Linear + LayerNorm (the FB's G_V / G_A) and the pooled vector expanded back by its own
    Linear + GELU (the FB's F_V / F_A). The layer is the project's pre-norm Transformer layer
    (the MTT's: ``heads`` heads, feed-forward ``mlp_dim``)."""

    def __init__(self, dim: int, width: int, heads: int, mlp_dim: int):
        super().__init__()
        self.video_down = nn.Sequential(nn.Linear(dim, width), nn.LayerNorm(width))
        self.audio_down = nn.Sequential(nn.Linear(dim, width), nn.LayerNorm(width))
        self.layer = TemporalLayer(width, heads, width // heads, mlp_dim)
        self.video_up = nn.Sequential(nn.Linear(width, dim), nn.GELU())
        self.audio_up = nn.Sequential(nn.Linear(width, dim), nn.GELU())
        self.video_gate = nn.Parameter(torch.zeros(1))
        self.audio_gate = nn.Parameter(torch.zeros(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor, num_frames: int):
        dtype = self.video_gate.dtype
        tokens = torch.cat([clip_tokens(self.video_down(video.to(dtype)), num_frames),
                            self.audio_down(audio.to(dtype))], dim=1)
        pooled = self.layer(tokens).mean(1, keepdim=True)  # (B, 1, width)
        video = gated_add(video, self.video_gate, self.video_up(pooled).repeat_interleave(num_frames, dim=0))
        return video, gated_add(audio, self.audio_gate, self.audio_up(pooled))


def build_fusion(cfg) -> Optional[nn.ModuleList]:
    """One fusion block per encoder block for ``cfg.fusion``; None for ``none``."""
    make = {
        "none": None,
        "bottleneck": lambda: FusionBottleneck(cfg.embed_dim, cfg.fusion_dim),
        "add": AddFusion,
        "mult": lambda: MultFusion(cfg.embed_dim, cfg.fusion_dim, cfg.fusion_heads),
        "mult_concat": lambda: ConcatFusion(cfg.embed_dim, cfg.fusion_dim, cfg.fusion_heads, cfg.fusion_mlp_dim),
    }[cfg.fusion]
    return None if make is None else nn.ModuleList(make() for _ in range(cfg.depth))
