"""The run's hold on its ranks and its folder: the process group (when no launcher made one) and
the run folder's lease (runs/lease.py), taken before anything is written, released at the end."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.distributed as dist

from mma_dfer.runs.lease import Lease, LeaseError
from mma_dfer.training import TrainingError, cpu_op
from mma_dfer.training.distributed import DistEnv, all_max, init_process_group


@contextlib.contextmanager
def hold(run_dir: Path, env: DistEnv, collective_timeout_s: int):
    """Yields rank 0's :class:`Lease` (None on the other ranks), released however the run ends."""
    if not dist.is_initialized():
        cpu_op.prepare(env.world_size, env.is_main)
        init_process_group(env, collective_timeout_s)
    lease = take_lease(run_dir, env)
    try:
        yield lease
    finally:
        if lease is not None:
            lease.release()


def take_lease(run_dir: Path, env: DistEnv):
    """Rank 0 takes the run folder's lease; every rank stops with the same error when another live
    run holds it."""
    lease, held = None, None
    if env.is_main:
        try:
            lease = Lease(run_dir).acquire()
        except LeaseError as e:
            held = e
    device = torch.device("cuda", env.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    refused = all_max([float(env.is_main and held is not None)], device)[0]
    if env.is_main and held is not None:
        raise TrainingError(str(held))
    if refused:
        raise TrainingError(f"{run_dir} is in use by another run (rank 0 names it)")
    return lease
