"""fp16's dynamic loss scale, wherever DeepSpeed keeps it: read for the log line, saved and
restored by the checkpoints (DeepSpeed does not checkpoint autocast's GradScaler)."""
from __future__ import annotations

from typing import Optional


class LossScale:
    """The loss scale of one engine. ``scaling``: fp16 with dynamic loss scaling, whose
    overflowing steps are skipped rather than fatal (the non-finite-loss policy reads it)."""

    def __init__(self, engine, optimizer, scaling: bool):
        self.engine, self.optimizer, self.scaling = engine, optimizer, scaling

    def grad_scaler(self):
        """The GradScaler DeepSpeed made for fp16 autocast (ZeRO-0 keeps it on the engine, ZeRO-1/2
        on its optimizer), or None. Looked up each time, as DeepSpeed holds it."""
        return getattr(self.engine, "torch_autocast_z0_gradscaler", None) or \
            getattr(self.optimizer, "torch_autocast_gradscaler", None)

    def value(self) -> Optional[float]:
        """The current scale: DeepSpeed's fp16 optimizer's, or autocast's GradScaler's; None without one."""
        if self.engine.fp16_enabled():
            scale = getattr(self.optimizer, "cur_scale", None) or getattr(self.optimizer, "loss_scale", None)
            return None if scale is None else float(scale)
        scaler = self.grad_scaler()
        return float(scaler.get_scale()) if scaler is not None else None

    def state(self) -> Optional[dict]:
        """The GradScaler's state for a checkpoint (None without one: DeepSpeed's own fp16
        optimizer saves its scaler in its own files)."""
        scaler = self.grad_scaler()
        return None if scaler is None else scaler.state_dict()

    def restore(self, state: Optional[dict]) -> None:
        """Continue from a checkpoint's :meth:`state` (nothing to do when either side has none)."""
        scaler = self.grad_scaler()
        if scaler is not None and state:
            scaler.load_state_dict(state)
