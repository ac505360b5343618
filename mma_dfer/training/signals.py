"""Stopping on SLURM's warning signals and on Ctrl-C: the flag the loop reads at step
boundaries, and the exception that says a resumable checkpoint was written."""
from __future__ import annotations

import os
import signal
import sys
from typing import Optional

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: checkpointed on a signal; requeue and resume


class Preempted(Exception):
    """A signal asked the run to stop; a resumable checkpoint has been written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """Set by SIGUSR1/SIGTERM (SLURM's warning before a time limit or preemption) and by SIGINT
    (Ctrl-C) while the context is active; the previous handlers come back on exit. A first
    Ctrl-C stops the run as SIGTERM does (a checkpoint at the next step, exit 75); a second one
    raises KeyboardInterrupt at once (nothing more is saved)."""

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)  # USR2: submitit's checkpoint signal

    def __init__(self):
        self.raised: Optional[int] = None

    def __enter__(self):
        self.pid = os.getpid()  # data-loader workers forked inside the context inherit the handler
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if os.getpid() != self.pid:  # a loader worker: the training process decides
            return
        if signum == signal.SIGINT:
            if self.raised == signal.SIGINT:
                raise KeyboardInterrupt
            print("Ctrl-C: saving a checkpoint at the next step, then stopping (Ctrl-C again: stop at once, "
                  "without it)", file=sys.stderr, flush=True)
        self.raised = signum
