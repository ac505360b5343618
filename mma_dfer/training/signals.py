"""Stopping on SLURM's warning signals: the flag the loop reads at step boundaries, and the
exception that says a resumable checkpoint was written."""
from __future__ import annotations

import signal
from typing import Optional

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: checkpointed on a signal; requeue and resume
FAULT_ENV = "MMA_DFER_TEST_SIGNAL_AT_STEP"  # test hook: rank 0 signals itself after this step


class Preempted(Exception):
    """A signal asked the run to stop; a resumable checkpoint has been written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """Set by SIGUSR1/SIGTERM (SLURM's warning before a time limit or preemption) while the
    context is active; the previous handlers come back on exit."""

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)  # USR2: submitit's checkpoint signal

    def __init__(self):
        self.raised: Optional[int] = None

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.raised = signum
