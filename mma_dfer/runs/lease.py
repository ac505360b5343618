"""One writer per run folder: the lease a run holds on its ``output_dir`` while it runs.

A double submission, or an array resubmitted while the first one still runs, would otherwise
have two runs write the same checkpoints, ``log.jsonl`` and ``result.json``. Before a run writes
anything, its rank 0 takes ``<output_dir>/lease.json`` (host, pid, the process's start time,
SLURM job id, start time, last renewal), renews it every ``RENEW_S`` and removes it when the run
ends. A lease held by a live run is an error (:class:`LeaseError`) naming the holder, and
nothing is written. A lease whose holder is gone is taken over, and the log says whose it was:
- its SLURM job is this run's own (a requeued or restarted job keeps its id; one job never runs twice);
- its SLURM job is no longer running (``squeue``);
- its process no longer exists on this host (or the pid now belongs to another process);
- it was not renewed for ``TTL_S`` (its node was lost, and there is no scheduler to ask).
A lease is cleared by hand by deleting the file once its holder is known to be gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from mma_dfer.utils import atomic_write_json

log = logging.getLogger(__name__)

FILE = "lease.json"
TTL_S = 600  # a lease not renewed for this long is stale (a lost node's); longer than any checkpoint write
RENEW_S = 60
SLURM_ALIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
               "RESIZING"}


class LeaseError(RuntimeError):
    """The run folder is held by another run that is still alive."""


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), which tells
    a reused pid from the holder; None when there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _slurm_state(job_id: str) -> Optional[str]:
    """The job's state by ``squeue`` ("" when it is not queued or running any more), or None when
    SLURM cannot be asked."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return "" if "Invalid job id" in out.stderr else None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def describe(holder: dict) -> str:
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return (f"host {holder.get('host')} pid {holder.get('pid')}{job}, started {holder.get('started')}, "
            f"renewed {holder.get('renewed')}")


def gone(holder: dict, now: Optional[float] = None) -> Optional[str]:
    """Why the lease's holder is no longer running, or None when it may still be."""
    now = time.time() if now is None else now
    job = holder.get("slurm_job_id")
    if job and job == os.environ.get("SLURM_JOB_ID"):
        return f"it is this SLURM job's ({job}) earlier run (requeued or restarted)"
    if job:
        state = _slurm_state(str(job))
        if state == "":
            return f"its SLURM job {job} is no longer running"
        if state is not None and state.split()[0] not in SLURM_ALIVE:
            return f"its SLURM job {job} is {state}"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        pid = holder["pid"]
        if not _pid_alive(pid):
            return f"its process {pid} on {holder['host']} no longer exists"
        start = _process_start(pid)
        if start is not None and holder.get("pid_start") is not None and start != holder["pid_start"]:
            return f"its pid {pid} on {holder['host']} now belongs to another process"
    renewed = holder.get("renewed_unix")
    if not isinstance(renewed, (int, float)) or now - renewed > TTL_S:
        return f"it was not renewed for more than {TTL_S} s (its node lost?)"
    return None


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Lease:
    """The lease this process holds on ``run_dir`` (:meth:`acquire`), renewed by a daemon thread
    until :meth:`release`. ``lost`` says when another run took it over meanwhile."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / FILE
        self.token = uuid.uuid4().hex
        pid = os.getpid()
        self.record = {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
                       "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": self.token}
        self.lost: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _stamp(self) -> dict:
        now = time.time()
        return {**self.record, "renewed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "renewed_unix": now}

    def acquire(self) -> "Lease":
        """Take the lease (the folder is created if need be), taking over a stale one; a LeaseError
        naming the holder, with nothing written, when a live run holds it."""
        for _ in range(20):
            holder = _read(self.path)
            if holder is not None:
                if holder == {}:  # being written right now by another run, or garbage: look again
                    time.sleep(0.2)
                    holder = _read(self.path)
                why = gone(holder) if holder else "its file is unreadable"
                if holder is not None and why is None:
                    raise LeaseError(f"{self.path.parent} is in use by another run ({describe(holder)}); "
                                     f"this run wrote nothing. If that run is gone, delete {self.path} and rerun")
                if holder is not None and not self._remove_stale(holder):
                    continue
                if holder is not None:
                    log.warning("took over the lease of %s from %s: %s", self.path.parent,
                                describe(holder) if holder else "an unreadable lease file", why)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{FILE}.{self.token}")
            atomic_write_json(tmp, self._stamp())
            try:
                os.link(tmp, self.path)  # creates the lease only where there is none (atomic)
            except FileExistsError:
                continue  # another run took it first: judge that one
            finally:
                tmp.unlink(missing_ok=True)
            self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
            self._thread.start()
            return self
        raise LeaseError(f"{self.path}: could not take the run folder's lease (other runs keep taking it)")

    def _remove_stale(self, holder: dict) -> bool:
        """Move the stale lease away, unless another run replaced it meanwhile; whether it went."""
        aside = self.path.with_name(f".{FILE}.stale.{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        if _read(aside) != holder:  # a fresh lease of a run that took over first: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            current = _read(self.path)
            if not current or current.get("token") != self.token:
                self.lost = describe(current) if current else "nobody (the lease file was removed)"
                log.error("the lease of %s was taken over by %s", self.path.parent, self.lost)
                return
            try:
                atomic_write_json(self.path, self._stamp())
            except OSError as e:  # a full disk: the lease stays, renewed at the next chance
                log.warning("could not renew %s: %s", self.path, e)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = _read(self.path)
        if current and current.get("token") == self.token:
            self.path.unlink(missing_ok=True)
