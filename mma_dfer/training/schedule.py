"""The learning-rate schedule: the authors' CosineAnnealingLR, set on the optimizer by hand, and the
epoch's length it runs over."""
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


class Schedule:
    """An epoch's length and each step's learning rate: ``steps`` optimizer steps per epoch (the
    sampler's, cut to ``train.max_steps_per_epoch`` when it is set), the cosine over them."""

    def __init__(self, cfg: Config, steps_per_epoch: int):
        self.cfg = cfg
        limit = cfg.train.max_steps_per_epoch
        self.steps = min(steps_per_epoch, limit) if limit else steps_per_epoch

    def apply(self, optimizer, epoch: int, step_in_epoch: int) -> float:
        """Set the learning rate of step ``step_in_epoch`` of ``epoch`` on ``optimizer``; returns it."""
        lr = cosine_lr(self.cfg, epoch, step_in_epoch, self.steps)
        set_lr(optimizer, lr)
        return lr
