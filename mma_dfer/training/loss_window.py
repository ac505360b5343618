"""Losses kept on the device between the trainer's checks (no host sync per step)."""
from __future__ import annotations

import torch


class LossWindow:
    """The losses of the micro-steps since the last check, kept on the device and read in one
    transfer every ``train.log_every`` steps: reading each step's loss (``.item()``, or
    ``bool(isfinite(loss))``) would make the host wait for the GPU at every step."""

    def __init__(self, size: int, device):
        self.values = torch.empty(size, dtype=torch.float32, device=device)
        self.steps: list[int] = []

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.values[len(self.steps)].copy_(loss.detach(), non_blocking=True)
        self.steps.append(step)

    def drain(self) -> list[tuple[int, float]]:
        """(step, loss) of every micro-step since the last drain."""
        out = list(zip(self.steps, self.values[:len(self.steps)].tolist()))
        self.steps = []
        return out
