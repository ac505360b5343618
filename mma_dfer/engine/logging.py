"""Rank-0 run logging: TensorBoard scalars/images/hparams and an append-only ``log.jsonl``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class RunLogger:
    """A no-op on every rank but 0."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
            self.jsonl = open(run_dir / "log.jsonl", "a")

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            if v is not None:
                self.writer.add_scalar(f"{prefix}{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, **{f"{prefix}{k}": v for k, v in values.items()}}) + "\n")
        self.jsonl.flush()

    def confusion(self, step: int, cm: np.ndarray, tag: str = "eval/confusion") -> None:
        if self.enabled:
            self.writer.add_image(tag, confusion_image(cm), step, dataformats="HWC")

    def text(self, tag: str, text: str) -> None:
        if self.enabled:
            self.writer.add_text(tag, f"```\n{text}\n```")

    def hparams(self, hparams: dict, metrics: dict) -> None:
        if self.enabled:
            self.writer.add_hparams(hparams, metrics, run_name="hparams")

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()


def confusion_image(cm: np.ndarray, cell: int = 24) -> np.ndarray:
    """Row-normalised confusion matrix as an (H, W, 3) uint8 heat map (white 0 -> blue 1)."""
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    img = np.kron(rows, np.ones((cell, cell)))
    rgb = np.stack([1 - img, 1 - img * 0.6, np.ones_like(img)], axis=-1)
    return (rgb * 255).astype(np.uint8)
