"""Fusion Bottleneck (paper section 3.3, eqs. 2-5), one after every encoder block."""
from __future__ import annotations

import torch
import torch.nn as nn


def gated_add(x: torch.Tensor, gate: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """``x + tanh(gate) * update`` computed in x's dtype: a bf16 residual stream stays bf16 next
    to the fp32 trainable gate (of shape [1], which would otherwise promote it to fp32)."""
    return x + torch.tanh(gate).to(x.dtype) * update.to(x.dtype)


class FusionBottleneck(nn.Module):
    """Compress each modality to ``latent_dim``, add the other modality's global mean, expand
    back and add through a tanh gate initialised at 0 (so training starts from the unimodal
    encoders).

    Exactly as the authors' code runs it: G_V/G_A = Linear + LayerNorm (eps 1e-5) on every token
    (CLS and prompts included); the audio mean is over all audio tokens; the video mean is over
    all tokens of all frames of one clip (frames first, then tokens); both exchanges read the
    pre-exchange values (simultaneous); F_V/F_A = Linear + exact GELU; one scalar gate per
    modality per block.

    Args:
        dim: encoder width (768).
        latent_dim: bottleneck width d (128; Table 6 varies it).
    """

    def __init__(self, dim: int, latent_dim: int):
        super().__init__()
        self.video_down = nn.Sequential(nn.Linear(dim, latent_dim), nn.LayerNorm(latent_dim))
        self.audio_down = nn.Sequential(nn.Linear(dim, latent_dim), nn.LayerNorm(latent_dim))
        self.video_up = nn.Sequential(nn.Linear(latent_dim, dim), nn.GELU())
        self.audio_up = nn.Sequential(nn.Linear(latent_dim, dim), nn.GELU())
        self.video_gate = nn.Parameter(torch.zeros(1))
        self.audio_gate = nn.Parameter(torch.zeros(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor, num_frames: int):
        """video: (B*T, Nv, D) frames of B clips, sample-major; audio: (B, Na, D)."""
        bt, nv, _ = video.shape
        v_low = self.video_down(video)
        a_low = self.audio_down(audio)
        a_global = a_low.mean(1, keepdim=True).repeat_interleave(num_frames, dim=0)
        v_global = v_low.view(bt // num_frames, num_frames, nv, -1).mean(1).mean(1, keepdim=True)
        return gated_add(video, self.video_gate, self.video_up(v_low + a_global)), \
            gated_add(audio, self.audio_gate, self.audio_up(a_low + v_global))
