"""The one reader of the distributed environment, and the collectives the trainer agrees on.

Order: a launcher's variables (``deepspeed``/``torchrun``: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) first, then SLURM's (``srun``: SLURM_PROCID, SLURM_STEP_NUM_TASKS,
SLURM_LOCALID, SLURM_STEP_NODELIST, SLURM_JOB_ID), then a single local process. The result is
exported back as the launcher variables, because DeepSpeed falls back to MPI discovery (and
fails without mpi4py) when any of them is missing. A partly set launcher environment is an
error rather than a guess.
"""
from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d as c10d

from mma_dfer.training import TrainingError

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
PEER_LOST_EXIT_CODE = 76  # a collective failed or timed out: a rank (or its node) is gone; requeue and resume


@dataclass
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # "launcher", "slurm" or "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def export(self) -> None:
        os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK=str(self.local_rank),
                          MASTER_ADDR=self.master_addr, MASTER_PORT=str(self.master_port))


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list (``node[03-05,07],gpu1`` -> ``node03``)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not m:
        raise RuntimeError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def detect(env=None) -> DistEnv:
    env = os.environ if env is None else env
    present = [v for v in ("RANK", "WORLD_SIZE") if v in env]
    if present:
        missing = [v for v in LAUNCHER_VARS if v not in env]
        if missing:
            raise RuntimeError(f"partly set launcher environment: {present} set but {missing} missing")
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), env["MASTER_ADDR"],
                       int(env["MASTER_PORT"]), "launcher")
    if "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_STEP_ID" in env):
        world = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
        nodes = env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "localhost"))
        port = int(env.get("MASTER_PORT", 10000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        return DistEnv(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", "0")),
                       env.get("MASTER_ADDR", first_host(nodes)), port, "slurm")
    return DistEnv(0, 1, 0, "127.0.0.1", _free_port(), "single")


def set_collective_timeout(seconds: int) -> datetime.timedelta:
    """Make ``seconds`` the timeout of every process group created from now on; returns it.

    ``init_process_group`` takes a timeout, but groups made later (DeepSpeed's data-parallel
    group, which carries the gradient all-reduce) fall back to torch's module defaults, 30 min
    for gloo and 10 min for NCCL, which no public setting changes: they are set here, before
    the default group is made.
    """
    timeout = datetime.timedelta(seconds=seconds)
    c10d.default_pg_timeout = timeout
    if isinstance(getattr(c10d, "default_pg_nccl_timeout", None), datetime.timedelta):
        c10d.default_pg_nccl_timeout = timeout
    return timeout


class PortInUseError(TrainingError):
    """The rendezvous port is taken (another run on this host): a start-up failure, exit 2, not 76."""


def port_in_use(exc: BaseException) -> bool:
    text = str(exc)
    return "EADDRINUSE" in text or "ddress already in use" in text


def init_process_group(env: DistEnv, timeout_s: int) -> None:
    """DeepSpeed's process group over ``env`` (gloo on the CPU, NCCL on GPUs). A rendezvous port
    that another process holds is a :class:`PortInUseError` saying how to choose another, so it is
    not taken for a lost rank (which would be requeued to clash again)."""
    import deepspeed  # lazy: seconds to import; submit imports the trainer (planned_identity) without it

    try:
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo",
                                   auto_mpi_discovery=False, timeout=set_collective_timeout(timeout_s))
    except Exception as e:
        if not port_in_use(e):
            raise
        raise PortInUseError(
            f"port {env.master_port} on {env.master_addr} is in use (another run on this host?): rank "
            f"{env.rank} could not open the rendezvous there. Choose another port: deepspeed --master_port N, "
            f"or MASTER_PORT=N (srun, sbatch --export=ALL,MASTER_PORT=N)") from None


def is_collective_failure(exc: BaseException) -> bool:
    """True when ``exc`` is a collective or rendezvous that failed because another rank went away.

    torch raises ``DistError`` subclasses for NCCL and the rendezvous store; gloo raises a plain
    RuntimeError from its TCP transport: "Timed out waiting Nms for recv operation" when the peer
    is silent (a lost node; after ``train.collective_timeout_s``), "Connection reset/closed by
    peer" when its process died and its kernel said so.
    """
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and "gloo/transport/" in str(exc)


def all_max(values: list[float], device) -> list[float]:
    """Element-wise max over ranks (the stop and non-finite flags must agree everywhere)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def all_mean(value: float, device) -> float:
    """The mean over ranks (logged scalars are every rank's)."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.item()
