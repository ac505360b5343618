"""FLOPs of one training step, counted by running the model on meta tensors (no compute)."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from mma_dfer.models import build_model


def step_flops(build: Callable[[], tuple[torch.nn.Module, tuple]]) -> tuple[float, float]:
    """(training FLOPs, forward FLOPs) of the model and inputs that ``build`` makes, built on
    the meta device: every matmul, convolution and attention the forward and backward run."""
    with torch.device("meta"):
        model, inputs = build()
    model.train()
    with FlopCounterMode(display=False) as train:
        model(*inputs).sum().backward()
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        model(*inputs)
    return float(train.get_total_flops()), float(fwd.get_total_flops())


def train_flops_per_clip(cfg) -> tuple[float, float]:
    """(training FLOPs, forward FLOPs) per clip for ``cfg``'s model and input geometry.

    The frozen encoders' backward computes activation gradients only, so training is ~2x the
    forward, not 3x. These are model FLOPs: activation checkpointing's recomputation is not
    counted (compilation changes how, not what, is computed)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.grad_checkpointing = False
    d = cfg.data

    def build():
        return build_model(cfg, load_pretrained=False), (
            torch.empty(1, d.num_frames, 3, d.resolution, d.resolution), torch.empty(1, 1, d.audio_frames, d.mel_bins))
    return step_flops(build)
