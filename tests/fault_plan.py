"""The suite's fault plan (mma_dfer/faults.py): what a test asks a training run to suffer, read
from the test's own variables. A test arms it by passing :func:`signal_at`'s or
:func:`kill_before_marker`'s environment to the training process (``run_train(..., env=...)``);
the product loads this file by its path, so any launcher and working folder will do."""
import os
import signal
from pathlib import Path

from mma_dfer.faults import ENV

SIGNAL_AT_STEP = "MMA_DFER_TEST_SIGNAL_AT_STEP"  # "3" or "3:SIGINT": rank 0 signals itself after global step 3
KILL_AT = "MMA_DFER_TEST_KILL_AT"  # "save:<tag>": rank 0 SIGKILLs itself before that tag's marker


def signal_at(step: int, sig: str = "SIGUSR1") -> dict:
    """The environment in which rank 0 sends itself ``sig`` after global step ``step`` (as SLURM's
    warning or a Ctrl-C would come): the run checkpoints there and exits 75."""
    return {ENV: str(Path(__file__).resolve()), SIGNAL_AT_STEP: f"{step}:{sig}"}


def kill_before_marker(tag: str) -> dict:
    """The environment in which rank 0 is SIGKILLed inside the save of ``tag``: every rank's
    files written, its ``complete.json`` not."""
    return {ENV: str(Path(__file__).resolve()), KILL_AT: f"save:{tag}"}


def at(point: str, **where) -> None:
    """Called by :func:`mma_dfer.faults.point` at every fault point of an armed run."""
    if point == "train.after_step" and where["rank"] == 0:
        step, _, name = os.environ.get(SIGNAL_AT_STEP, "0").partition(":")
        if int(step) and where["step"] == int(step):
            os.kill(os.getpid(), getattr(signal, name or "SIGUSR1"))
    elif point == "checkpoint.before_marker" and os.environ.get(KILL_AT) == f"save:{where['tag']}":
        os.kill(os.getpid(), signal.SIGKILL)
