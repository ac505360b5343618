"""FLOPs of one training step, counted by running the model on meta tensors (no compute)."""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode


def train_flops_per_clip(cfg) -> tuple[float, float]:
    """(training FLOPs, forward FLOPs) per clip for ``cfg``'s model and input geometry.

    Counted with torch's FlopCounterMode on a meta-device copy: every matmul, convolution and
    attention the forward and backward actually run. The frozen encoders' backward computes
    activation gradients only, so training is ~2x the forward, not 3x. These are model FLOPs:
    activation checkpointing's recomputation is not counted, and the blocks run uncompiled
    (compilation changes how, not what, is computed)."""
    from mma_dfer.models import build_model

    cfg = copy.deepcopy(cfg)
    cfg.model.grad_checkpointing = cfg.model.compile_blocks = False
    d = cfg.data
    with torch.device("meta"):
        model = build_model(cfg, load_pretrained=False).train()
        video = torch.empty(1, d.num_frames, 3, d.resolution, d.resolution)
        audio = torch.empty(1, 1, d.audio_frames, d.mel_bins)
    with FlopCounterMode(display=False) as train:
        model(video, audio).sum().backward()
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        model(video, audio)
    return float(train.get_total_flops()), float(fwd.get_total_flops())
