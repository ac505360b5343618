"""Small helpers shared across the package: atomic writes, file hashes, integer lists, seeding, threads."""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 16 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def parse_int_list(text: str) -> list[int]:
    """``"1-3,5"`` -> [1, 2, 3, 5] (folds and resolutions on command lines)."""
    out = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; results are shared on a cluster: the umask's mode, as open() gives
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def one_thread_per_process() -> None:
    """Pool initializer: each worker of a process pool computes with one thread. Torch would
    otherwise give each of N workers a thread per core, N x cores threads on the cores (the likely
    reason 8 cache writers beside a compile on a 16-core GPU machine took 30x their time alone)."""
    import torch  # lazy: utils is imported by the torch-free modules (config, identity, aggregate)

    torch.set_num_threads(1)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (CPU and every CUDA device)."""
    import torch  # lazy: as in one_thread_per_process

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
