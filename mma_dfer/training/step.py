"""One micro-batch through the DeepSpeed engine: inputs to the device and dtype, the frames'
augmentation on the device when the loader left it there, the loss and its backward."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mma_dfer.config import Config
from mma_dfer.data import gpu_augment
from mma_dfer.data.dataset import placeholder_inputs
from mma_dfer.training.engine import BuiltEngine


class Step:
    """The forward (also evaluation's) and the backward of the engine ``built`` made."""

    def __init__(self, built: BuiltEngine, cfg: Config):
        self.engine, self.cfg = built.engine, cfg
        self.device, self.dtype, self.cudagraphs = built.engine.device, built.input_dtype, built.cudagraphs

    def forward(self, video, audio):
        return self.engine(video.to(self.device, self.dtype), audio.to(self.device, self.dtype))

    def frames(self, batch) -> torch.Tensor:
        """The batch's frames, augmented on the device when the loader left that to us."""
        if "aug" not in batch:
            return batch["video"]
        video = batch["video"].to(self.device, non_blocking=True)
        return gpu_augment.apply(video, batch["aug"], self.cfg.data.resolution, self.cfg.data.normalize)

    def micro_step(self, batch) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns the loss (on the device, not read)."""
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self.forward(self.frames(batch), batch["audio"])
        loss = F.cross_entropy(logits.float(), batch["label"].to(self.device, non_blocking=True),
                               label_smoothing=self.cfg.train.label_smoothing)
        self.engine.backward(loss)
        return loss

    def empty_step(self) -> None:
        """Every clip of this micro-batch was skipped: a forward and backward that count for nothing
        keep the ranks in step (ZeRO-3 gathers weights in every forward and backward)."""
        self.engine.backward(self.forward(*placeholder_inputs(self.cfg.data)).float().sum() * 0)
