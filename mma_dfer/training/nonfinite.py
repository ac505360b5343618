"""What a non-finite loss does to a run, decided where the ranks agree anyway."""
from __future__ import annotations

import math

from mma_dfer.training import TrainingError
from mma_dfer.training.distributed import all_max

MAX_BAD_STEPS = 20  # consecutive non-finite losses the fp16 loss scaler may absorb


class NonFiniteGuard:
    """Stops the run on non-finite losses: at once, or, with fp16 loss scaling (which skips such
    steps and lowers the scale), after more than :data:`MAX_BAD_STEPS` in a row on any rank.
    The same one collective also agrees on a stop signal, so a check costs one host sync."""

    def __init__(self, loss_scaling: bool, device):
        self.loss_scaling, self.device = loss_scaling, device
        self.bad_run = 0  # consecutive non-finite steps up to now (this rank)
        self.worst_run = 0  # the longest such run so far (this rank)

    def check(self, losses: list[tuple[int, float]], signalled: bool, epoch: int) -> bool:
        """``losses``: (step, loss) since the last check; ``signalled``: this rank's stop flag.
        Raises :class:`TrainingError` to stop; returns whether any rank was signalled."""
        bad = sorted({step for step, loss in losses if not math.isfinite(loss)})
        for step in sorted({step for step, _ in losses}):
            self.bad_run = self.bad_run + 1 if step in bad else 0
            self.worst_run = max(self.worst_run, self.bad_run)
        stop_any, bad_any, worst = all_max([float(signalled), float(bool(bad)), float(self.worst_run)], self.device)
        if bad_any and (not self.loss_scaling or worst > MAX_BAD_STEPS):
            where = f"step {bad[0]}" if bad else "another rank"
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}, {where} ({int(max(worst, 1))} in a row); "
                                "the last checkpoint is left as it was")
        return bool(stop_any)
