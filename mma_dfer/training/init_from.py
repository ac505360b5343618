"""``--init-from``: a new run that starts from another run's trainable weights (not its optimizer
state or progress). The weights' hash is part of the new run's identity, and where they came
from is its ``origin`` in result.json."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from mma_dfer.runs import checkpoints
from mma_dfer.safe_files import CheckpointError
from mma_dfer.training import TrainingError

log = logging.getLogger("mma_dfer.train")


@dataclass
class InitFrom:
    checkpoint: str  # the complete tag folder the weights were read from
    config_fingerprint: Optional[str]  # that run's
    epoch: Optional[int]  # that checkpoint's
    weights_sha256: str  # checkpoints.weights_digest of the weights (the new run's identity holds it)
    weights: dict  # the trainable weights by parameter name

    @classmethod
    def read(cls, path: str) -> "InitFrom":
        """The trainable weights of a run folder's newest checkpoint or of a tag folder, checked
        against its marker (sizes and sha256) and read with ``weights_only=True``."""
        try:
            tag_dir = checkpoints.resolve(Path(path))
        except FileNotFoundError as e:
            raise CheckpointError(f"--init-from: {e}") from None
        marker = checkpoints.verify(tag_dir)
        weights = checkpoints.saved_module(tag_dir)
        return cls(str(tag_dir), marker.get("config_fingerprint"), marker.get("epoch"),
                   checkpoints.weights_digest(weights), weights)

    def apply(self, model) -> None:
        """Every trainable weight of ``model`` from the checkpoint (before DeepSpeed copies them)."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        missing = sorted(set(params) - set(self.weights))
        unexpected = sorted(set(self.weights) - set(params))
        shapes = sorted(n for n in set(params) & set(self.weights)
                        if tuple(params[n].shape) != tuple(self.weights[n].shape))
        if missing or unexpected or shapes:
            raise TrainingError(f"--init-from {self.checkpoint}: its trainable weights do not fit this "
                                f"model (missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes "
                                f"{shapes[:5]})")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.weights[n])
        log.info("initialised the trainable weights from %s (run %s, epoch %s)", self.checkpoint,
                 self.config_fingerprint, self.epoch)

    def origin(self) -> dict:
        """result.json's ``origin`` of a run that started here."""
        return {"kind": "init-from", "checkpoint": self.checkpoint, "config_fingerprint": self.config_fingerprint,
                "epoch": self.epoch, "weights_sha256": self.weights_sha256}
