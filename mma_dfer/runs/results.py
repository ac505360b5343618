"""``result.json``: one schema for training and for evaluating any checkpoint."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import timm
import torch

from mma_dfer import stats
from mma_dfer.datasets import class_names, num_folds


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    try:
        import deepspeed  # lazy: optional here (evaluate runs without it; recorded when installed)

        out["deepspeed"] = deepspeed.__version__
    except ImportError:
        pass
    return out


def predictions(ev: dict) -> dict:
    """An evaluation's per-clip predictions, compactly (three integer lists in dataset-index
    order): what the aggregator needs for the fold-mean and paired intervals."""
    return {"index": [int(i) for i in ev["indices"]], "label": [int(x) for x in ev["labels"]],
            "pred": [int(p) for p in np.asarray(ev["probs"]).argmax(1)]}


def intervals(cfg, first: dict, two: Optional[dict]) -> dict:
    """result.json's ``intervals``: the stratified bootstrap interval of UAR, WAR and their 2-clip
    forms (:mod:`mma_dfer.stats`), with how they were computed."""
    out = {"level": cfg.eval.ci_level, "resamples": cfg.eval.ci_resamples, "seed": cfg.eval.ci_seed,
           "method": stats.METHOD}
    for suffix, p in (("", first), ("_2clip", two)):
        ci = stats.mean_intervals([(p["label"], [p["pred"]])], cfg.eval.ci_level, cfg.eval.ci_resamples,
                                  cfg.eval.ci_seed) if p and p["index"] else {}
        out.update({m + suffix: ci.get(m) for m in stats.METRICS})
    return out


def make_result(cfg, evals: dict, epoch: int, **extra) -> dict:
    """The result of a run: ``evals`` maps clips (1, 2) to :func:`evaluate` outputs."""
    first = evals[min(evals)]
    two = evals.get(2)
    clips, clips2 = predictions(first), predictions(two) if two else None
    return {
        "dataset": cfg.data.dataset, "fold": cfg.data.fold, "resolution": cfg.data.resolution, "epoch": epoch,
        "uar": first["uar"], "war": first["war"],
        "uar_2clip": two["uar"] if two else None, "war_2clip": two["war"] if two else None,
        "num_test_clips": first["num_clips"], "skipped_test_clips": first["skipped"],
        "confusion_matrix": first["confusion"], "confusion_matrix_2clip": two["confusion"] if two else None,
        "class_names": class_names(cfg.data), "folds": num_folds(cfg.data), "seed": cfg.train.seed,
        "predictions": clips, "predictions_2clip": clips2, "intervals": intervals(cfg, clips, clips2), **extra,
        "git_commit": git_commit(), "versions": versions(), "name": cfg.name,
    }
