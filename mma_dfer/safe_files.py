"""Reading torch files as data only, and the error every checkpoint reader raises.

Every file this project loads (the published encoders, the authors' releases, its own DeepSpeed
tags, ``portable_state.pt``, the per-rank RNG files) may come from someone else, and a pickle
can run code when it is read. :func:`safe_load` reads with ``torch.load(weights_only=True)``
and lets through only the non-tensor globals its caller names; there is no fallback to full
unpickling. It sits below ``models/``, ``runs/`` and ``training/``, which all read checkpoints,
and imports torch only when it reads a file, so that the torch-free checks of a checkpoint
(``runs/checkpoints.py``'s marker and hashes, the preflight) can raise :class:`CheckpointError`.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Iterable


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, unsafe, or does not fit the model; names the file."""


def safe_load(path: str | Path, allowed: Iterable = ()) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU, allowing exactly ``allowed`` globals."""
    import torch  # lazy: CheckpointError's importers (runs/checkpoints, the preflight) import no torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)|but got <class '([^']+)'>", str(e))
        what = (f"it contains the non-tensor object {found.group(1) or found.group(2)}" if found
                else "it contains objects that are not tensors")
        raise CheckpointError(f"{path}: refused to load: {what}. Checkpoints are loaded with "
                              "weights_only=True and only known-safe types are allowed.") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj
