"""Checks that need only the config and the file system, made before anything heavy is imported.

``train`` and ``evaluate`` call these first, before torch, DeepSpeed or the model: a first run's
usual mistakes (the pretrained encoders not downloaded, a wrong ``data.root`` or fold file, a
checkpoint or ``--init-from`` that is not there, an output folder that cannot take the run or
would overwrite another checkpoint's evaluation) then fail in well under a second with one
line and exit 2, instead of a traceback after the imports and the model build. Nothing here
imports torch; the checks that need it (the run folder's identity, the checkpoint's hashes)
follow where the work starts.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from mma_dfer.data.annotations import read_split
from mma_dfer.runs.checkpoints import MARKER

# config field -> (the encoder branch that reads it, what the file is)
PRETRAINED = {"video_checkpoint": ("video", "MAE-Face ViT-B"),
              "audio_checkpoint": ("audio", "AudioMAE ViT-B (AS-2M, pretrained)")}
WHERE = "docs/faq.md#where-are-the-pretrained-encoders"


class PreflightError(ValueError):
    """A file or folder the command needs is missing or in the wrong state; names it."""


def check_pretrained(model) -> None:
    """Each pretrained encoder file the model section names (for a branch it builds) exists."""
    uses = {branch: model.modalities in ("audiovisual", branch) for branch in ("video", "audio")}
    for field, (branch, what) in PRETRAINED.items():
        path = getattr(model, field)
        if path and uses[branch] and not Path(path).is_file():
            raise PreflightError(f"model.{field}={path}: no such file (the {what} encoder weights; download it "
                                 f"there, see {WHERE}, or set model.{field}=<its path>)")


def check_data(data) -> None:
    """``data.root`` exists and the fold's train and test lists are there and not empty."""
    read_split(data, "train")
    read_split(data, "test")


def _writable(folder: Path) -> None:
    """The folder, or the nearest folder above it that exists, is a folder this user may write."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise PreflightError(f"{folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PreflightError(f"{folder}: cannot write into {probe} (permission denied)")


def _holds_run(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return (any((run_dir / f).exists() for f in ("result.json", "identity.json"))
            or (ckpts.is_dir() and any(ckpts.glob(f"*/{MARKER}"))))


def check_training(cfg, resume: str = "auto", init_from: Optional[str] = None) -> None:
    """What ``train`` needs on disk: the pretrained files, the data, the run folder's state,
    ``--resume``'s checkpoint and ``--init-from``'s run."""
    check_pretrained(cfg.model)
    check_data(cfg.data)
    run_dir = cfg.run_dir
    _writable(run_dir)
    if resume == "never" and _holds_run(run_dir):
        raise PreflightError(f"{run_dir} already holds a run; --resume never starts only in a new or empty "
                             "output_dir (--resume auto continues the run there when it has this config)")
    if resume not in ("auto", "never") and not Path(resume).is_dir():
        raise PreflightError(f"--resume {resume}: not a complete checkpoint (no such folder; give auto, never, or "
                             "a checkpoint tag folder of this config's run)")
    if init_from and not Path(init_from).exists():
        raise PreflightError(f"--init-from {init_from}: no such run or checkpoint folder")


def evaluation_output(output: Optional[str], data, default_root: str) -> Path:
    """Where ``evaluate`` writes its result.json: ``--output``, else the fold's folder under
    ``default_root``."""
    if output:
        return Path(output)
    return Path(default_root) / data.dataset / f"res{data.resolution}" / f"fold{data.fold}"


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def check_evaluation(cfg, checkpoint: str) -> None:
    """What ``evaluate`` needs on disk: the checkpoint, and for a run's checkpoint the pretrained
    files its model is rebuilt on and the test data (``cfg`` None: the run's config is not known
    yet). An authors' file holds its whole model; the config is checked against it (its classes,
    its size) when it is read, before its test data."""
    if not Path(checkpoint).exists():
        raise PreflightError(f"--checkpoint {checkpoint}: no such run folder, checkpoint folder or file")
    if cfg is not None and Path(checkpoint).is_dir():
        check_pretrained(cfg.model)
        read_split(cfg.data, "test")


def check_evaluation_output(out: Path, checkpoint: str, output_given: bool) -> None:
    """``evaluate``'s output folder can be written and holds no other checkpoint's evaluation
    (two runs evaluated one after the other would otherwise share the fold's default folder;
    evaluating the same checkpoint again replaces its own result)."""
    _writable(out)
    previous = out / "result.json"
    if not previous.is_file():
        return
    try:
        earlier = json.loads(previous.read_text()).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if isinstance(earlier, str) and not _same_file(earlier, checkpoint):
        how = "pass another --output" if output_given else "pass --output <folder> to keep both"
        raise PreflightError(f"{previous} holds the evaluation of {earlier}; evaluating {checkpoint} there would "
                             f"overwrite it: {how} (or move it away)")
