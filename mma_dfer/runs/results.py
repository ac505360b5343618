"""``result.json``: one schema for training and for evaluating any checkpoint."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Optional

import torch

from mma_dfer.datasets import class_names, num_folds


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def versions() -> dict:
    import timm

    out = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    try:
        import deepspeed

        out["deepspeed"] = deepspeed.__version__
    except ImportError:
        pass
    return out


def make_result(cfg, evals: dict, epoch: int, **extra) -> dict:
    """The result of a run: ``evals`` maps clips (1, 2) to :func:`evaluate` outputs."""
    first = evals[min(evals)]
    two = evals.get(2)
    return {
        "dataset": cfg.data.dataset, "fold": cfg.data.fold, "resolution": cfg.data.resolution, "epoch": epoch,
        "uar": first["uar"], "war": first["war"],
        "uar_2clip": two["uar"] if two else None, "war_2clip": two["war"] if two else None,
        "num_test_clips": first["num_clips"], "skipped_test_clips": first["skipped"],
        "confusion_matrix": first["confusion"], "confusion_matrix_2clip": two["confusion"] if two else None,
        "class_names": class_names(cfg.data), "folds": num_folds(cfg.data), **extra,
        "git_commit": git_commit(), "versions": versions(), "name": cfg.name,
    }
