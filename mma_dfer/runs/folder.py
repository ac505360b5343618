"""What a run folder may hold: one config's run, nothing else.

A run folder (``output_dir``) records its config's identity in ``identity.json`` when training
starts, in every checkpoint marker and in ``result.json``. :func:`claim` is called before
anything is written: a folder that holds another config's run (any of the three), or a
checkpoint that records no identity, is an :class:`~mma_dfer.runs.identity.IdentityError` naming
each field that differs; a folder with this config's finished result is done (training skips
it). ``--resume never`` also refuses a folder that already holds a run, so that a fresh start
can never mix its checkpoints, logs and result with an older run's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from mma_dfer.runs import checkpoints
from mma_dfer.runs.identity import IdentityError, check_same
from mma_dfer.utils import atomic_write_json

IDENTITY_FILE = "identity.json"
RESULT_FILE = "result.json"


def hint(run_dir: Path) -> str:
    return (f"Give this config its own output_dir, or start it from that run's weights with "
            f"--init-from {run_dir}.")


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise IdentityError(f"{path}: unreadable {what} ({e}); move it away to reuse the folder") from None
    if not isinstance(data, dict):
        raise IdentityError(f"{path}: unreadable {what} (not a mapping); move it away to reuse the folder")
    return data


def write_identity(run_dir: Path, identity: dict, fingerprint: str) -> None:
    atomic_write_json(Path(run_dir) / IDENTITY_FILE, {"config_fingerprint": fingerprint, "identity": identity})


def claim(run_dir: Path, identity: dict, resume: str) -> Optional[dict]:
    """Check that ``run_dir`` may hold a run of ``identity``; returns its finished result when it
    already holds one (nothing to train), else None. Reads only; raises IdentityError."""
    run_dir = Path(run_dir)
    result_path, identity_path = run_dir / RESULT_FILE, run_dir / IDENTITY_FILE
    newest = checkpoints.latest(run_dir / "checkpoints") if (run_dir / "checkpoints").is_dir() else None
    if resume == "never" and (result_path.exists() or identity_path.exists() or newest):
        raise IdentityError(f"{run_dir} already holds a run; --resume never starts only in a new or empty "
                            "output_dir (--resume auto continues the run there when it has this config)")
    result = None
    if result_path.exists():
        result = read_json(result_path, "result file")
        check_same(result.get("run_identity"), identity, str(result_path), "the result", hint(run_dir))
    if identity_path.exists():
        check_same(read_json(identity_path, "identity file").get("identity"), identity, str(identity_path),
                   "the run folder", hint(run_dir))
    if newest is not None and resume == "auto":
        tag_dir = run_dir / "checkpoints" / newest["tag"]
        check_same(newest.get("identity"), identity, str(tag_dir), "the checkpoint", hint(run_dir))
    return result
