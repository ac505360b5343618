"""The whole MMA-DFER model (paper Figure 1): two frozen encoders run block by block with
progressive prompts and Fusion Bottlenecks between them, then the Joint Adaptation Module and
the Multimodal Temporal Transformer."""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import torch.nn as nn

from mma_dfer.config import ModelConfig
from mma_dfer.models.encoders import ViTEncoder
from mma_dfer.models.fusion_variants import build_fusion
from mma_dfer.models.ita import build_ita
from mma_dfer.models.prompts import ProgressivePrompts
from mma_dfer.models.temporal import MultimodalTemporalTransformer


class MMADFER(nn.Module):
    """Audio-visual DFER by adapting two frozen unimodal MAE encoders.

    Args:
        cfg: the model section of the config.
        num_classes: 7 (DFEW) or 11 (MAFW).
        image_size: frame resolution (112, 160 or 224).
        num_frames: frames per clip (16).
        audio_frames: fbank frames (512 = 5.12 s).
        mel_bins: fbank bins (128).

    ``forward(video, audio)``: video (B, T, 3, H, W) in [0, 1], audio (B, 1, audio_frames,
    mel_bins) normalised fbank; returns logits (B, num_classes).
    """

    def __init__(self, cfg: ModelConfig, num_classes: int, image_size: int = 160, num_frames: int = 16,
                 audio_frames: int = 512, mel_bins: int = 128):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_frames = num_frames
        self.audio_frames = audio_frames
        self.mel_bins = mel_bins
        self.use_video = cfg.modalities in ("audiovisual", "video")
        self.use_audio = cfg.modalities in ("audiovisual", "audio")
        vit = dict(embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                   patch_size=cfg.patch_size, num_prompts=cfg.num_prompts, prompt_pos_std=cfg.prompt_pos_std,
                   drop_path_rate=cfg.drop_path_rate)
        prompts = dict(num_prompts=cfg.num_prompts, num_updates=cfg.prompt_updates, depth=cfg.depth,
                       dim=cfg.embed_dim)
        if self.use_video:
            self.video_encoder = ViTEncoder((image_size, image_size), 3, **vit)
            self.video_prompts = ProgressivePrompts(**prompts)
        if self.use_audio:
            self.audio_encoder = ViTEncoder((audio_frames, mel_bins), 1, **vit)
            self.audio_prompts = ProgressivePrompts(**prompts)
        self.fusion = build_fusion(cfg)
        self.ita = build_ita(cfg, self.fusion, num_frames)
        self.jam = nn.Linear(cfg.embed_dim, cfg.temporal_dim)
        self.mtt = MultimodalTemporalTransformer(
            cfg.temporal_dim, cfg.temporal_layers, cfg.temporal_heads, cfg.temporal_head_dim,
            cfg.temporal_mlp_dim, num_steps=num_frames if self.use_video else 1,
        ) if cfg.temporal == "mtt" else None
        self.head = nn.Linear(cfg.temporal_dim, num_classes)
        self.set_grad_checkpointing(cfg.grad_checkpointing)
        for enc in self.encoders():
            for blk in enc.blocks:
                blk.attn.fused_attn = cfg.fused_attn
        self.freeze_encoders()

    # -- structure ----------------------------------------------------------------------
    def encoders(self) -> list[ViTEncoder]:
        return [e for e in (getattr(self, "video_encoder", None), getattr(self, "audio_encoder", None)) if e]

    def freeze_encoders(self) -> None:
        """Freeze every encoder weight except the positional embeddings (paper section 4.2)."""
        for enc in self.encoders():
            for name, p in enc.named_parameters():
                p.requires_grad = name == "pos_embed" and self.cfg.trainable_pos_embed

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for enc in self.encoders():
            enc.grad_checkpointing = enable

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def cast_frozen(self, dtype: torch.dtype) -> None:
        """Store the frozen encoder weights in ``dtype`` (bf16/fp16 for mixed precision).

        They get no gradient, so no fp32 master copy is needed, and kept in fp32 they would be
        cast at every use under autocast (two full weight copies per block per step). The
        trainable parameters stay as they are (fp32 masters for the optimizer); ``forward``
        then runs under autocast (see :meth:`mixed_precision`)."""
        for enc in self.encoders():
            for p in enc.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(dtype)

    def mixed_precision(self, device: torch.device):
        """Autocast to the frozen weights' dtype when they are half and the trainable parts are
        not (after :meth:`cast_frozen`); nothing to do in fp32 or after a whole-module cast."""
        frozen = self.encoders()[0].blocks[0].norm1.weight.dtype
        if frozen == self.head.weight.dtype or (torch.is_autocast_enabled(device.type)
                                                and torch.get_autocast_dtype(device.type) == frozen):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=frozen)

    def param_groups(self) -> "OrderedDict[str, list[tuple[str, nn.Parameter]]]":
        """Parameters by paper part, for the ``params`` summary."""
        groups: OrderedDict = OrderedDict((k, []) for k in (
            "prompts", "pos_embed", "fusion", "ita", "jam", "mtt", "classifier", "encoders"))
        for name, p in self.named_parameters():
            if "_prompts." in name:
                key = "prompts"
            elif name.endswith("encoder.pos_embed"):
                key = "pos_embed"
            elif name.startswith("fusion."):
                key = "fusion"
            elif name.startswith("ita."):
                key = "ita"
            elif name.startswith("jam."):
                key = "jam"
            elif name.startswith("mtt."):
                key = "mtt"
            elif name.startswith("head."):
                key = "classifier"
            else:
                key = "encoders"
            groups[key].append((name, p))
        return groups

    # -- forward ------------------------------------------------------------------------
    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        with self.mixed_precision(video.device):
            return self.forward_head(self.forward_features(video, audio))

    def encode(self, video: torch.Tensor, audio: torch.Tensor):
        """Both encoders interleaved block by block, with fusion and progressive prompts between
        blocks; returns the final token sequences (before the final norm): video (B*T, Nv, D)
        and audio (B, Na, D), None for a modality that is off."""
        xv = xa = None
        t = video.shape[1] if self.use_video else 1
        if self.use_video:
            xv = self.video_encoder.embed(video.flatten(0, 1), self.video_prompts.tokens())
        if self.use_audio:
            xa = self.audio_encoder.embed(audio, self.audio_prompts.tokens())
        for i in range(self.cfg.depth):
            if xv is not None:
                xv = self.video_encoder.block(i, xv)
            if xa is not None:
                xa = self.audio_encoder.block(i, xa)
            if self.fusion is not None:
                xv, xa = self.fusion[i](xv, xa, t)
            if self.ita is not None:
                xv, xa = self.ita[i](xv, xa, t)
            if xv is not None:
                xv = self.video_prompts.update(i, xv, self.video_encoder.prompt_offset)
            if xa is not None:
                xa = self.audio_prompts.update(i, xa, self.audio_encoder.prompt_offset)
        return xv, xa

    def forward_features(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Per-frame video CLS + audio CLS through the Joint Adaptation Module: (B, T, temporal_dim)
        (T = 1 for the audio-only variant)."""
        xv, xa = self.encode(video, audio)
        if xv is None:
            return self.jam(self.audio_encoder.cls_output(xa)).unsqueeze(1)
        cls_v = self.video_encoder.cls_output(xv).view(video.shape[0], video.shape[1], -1)
        if xa is not None:
            cls_v = cls_v + self.audio_encoder.cls_output(xa).unsqueeze(1)
        return self.jam(cls_v)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = self.mtt(feats) if self.mtt is not None else feats.mean(1)
        return self.head(pooled)
