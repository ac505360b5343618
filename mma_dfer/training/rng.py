"""The random streams a checkpoint saves and a resume restores, so that a resumed run draws
exactly what an uninterrupted one would have."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def rng_state() -> dict:
    """Every generator a training step draws from: the CPU's, numpy's, Python's and, when there
    is a GPU, every CUDA device's (drop-path on the GPU draws from those)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1]),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []}


def set_rng_state(state: dict, where: str) -> None:
    """Restore :func:`rng_state`'s generators; a checkpoint made on another kind of machine
    (CUDA states for other devices, or none on a GPU) cannot resume bit-exactly, and says so."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    cuda = state.get("cuda", [])
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(cuda) != devices:
        log.warning("%s holds %d CUDA generator states for %d devices here: the CUDA random streams continue "
                    "from the seed, so the run continues, but not bit-identically", where, len(cuda), devices)
    elif devices:
        torch.cuda.set_rng_state_all(cuda)
