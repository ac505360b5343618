"""An independent reference for the step benchmark, written with timm and torch alone (nothing
from mma_dfer): what a plain implementation of the same workload costs on the same device.

Two frozen timm ViT-B/16 (frames at ``image_size``; a ``audio_frames`` x 128 fbank with one
channel), 6 learnable prompt tokens appended to each token sequence (so, as in MMA-DFER,
gradients flow back through every frozen block), per-frame CLS + audio CLS -> Linear(768, 512)
-> one torch TransformerEncoderLayer(512, 8 heads, 1024) -> mean over frames -> Linear(512,
classes). No fusion blocks: it does ~4% fewer FLOPs than MMA-DFER.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer


class ReferenceModel(nn.Module):
    """Args: the input geometry; ``width``/``depth``/``heads`` of the ViTs (ViT-B unless a CPU
    rehearsal shrinks them)."""

    def __init__(self, image_size: int = 160, audio_frames: int = 512, num_classes: int = 7, prompts: int = 6,
                 width: int = 768, depth: int = 12, heads: int = 12):
        super().__init__()
        vit = dict(patch_size=16, embed_dim=width, depth=depth, num_heads=heads, num_classes=0, global_pool="token")
        self.video = VisionTransformer(img_size=image_size, in_chans=3, **vit)
        self.audio = VisionTransformer(img_size=(audio_frames, 128), in_chans=1, **vit)
        for p in list(self.video.parameters()) + list(self.audio.parameters()):
            p.requires_grad = False
        self.video_prompts = nn.Parameter(torch.randn(prompts, width) * width ** -0.5)
        self.audio_prompts = nn.Parameter(torch.randn(prompts, width) * width ** -0.5)
        self.proj = nn.Linear(width, 512)
        self.temporal = nn.TransformerEncoderLayer(512, 8, 1024, dropout=0.0, batch_first=True, norm_first=True)
        self.head = nn.Linear(512, num_classes)

    @staticmethod
    def _cls(vit: VisionTransformer, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        x = vit._pos_embed(vit.patch_embed(x))
        x = torch.cat([x, prompts.expand(x.shape[0], -1, -1).to(x.dtype)], dim=1)
        return vit.norm(vit.blocks(x))[:, 0]

    def cast_frozen(self, dtype: torch.dtype) -> None:
        """The frozen ViTs' weights in ``dtype`` once (the reference's "bf16 weights" variant)."""
        self.video.to(dtype)
        self.audio.to(dtype)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        frames = self._cls(self.video, video.flatten(0, 1), self.video_prompts).view(b, t, -1)
        feats = self.proj(frames + self._cls(self.audio, audio, self.audio_prompts)[:, None])
        return self.head(self.temporal(feats).mean(1))
