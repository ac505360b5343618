"""The learning-rate schedule: the authors' CosineAnnealingLR, set on the optimizer by hand."""
from __future__ import annotations

import math

from mma_dfer.config import Config


def cosine_lr(cfg: Config, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """CosineAnnealingLR to 0 over the epochs, stepped once per epoch (authors) or per step."""
    t = cfg.train
    if t.schedule == "constant":
        return t.lr
    progress = epoch if t.schedule_step == "epoch" else epoch + step_in_epoch / max(steps_per_epoch, 1)
    return 0.5 * t.lr * (1 + math.cos(math.pi * progress / t.epochs))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
