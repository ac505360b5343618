"""Uncertainty of the reported numbers: stratified bootstrap intervals over the test clips
(numpy only, no torch: the aggregator and the report use it).

A test fold is one sample of clips; its UAR/WAR would differ on another sample of the same
size. The bootstrap redraws the fold's clips with replacement *within each class* (so every
class keeps its number of clips, as the fold lists fix them, and UAR stays defined) and scores
each redraw; the central ``level`` share of those scores is the percentile interval. One
draw of clips serves every set of predictions on the same clips (1-clip and 2-clip, the seeds
of a fold, a variant and its reference), which is what makes the seed average and the paired
difference of two variants honest: both are scored on the same redrawn test set.

Everything is seeded (``seed``), so an interval is reproducible to the digit.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

LEVEL = 0.95  # the intervals' coverage
RESAMPLES = 2000  # bootstrap redraws of the test clips
SEED = 0  # the redraws' generator seed
METHOD = "percentile bootstrap over the test clips, stratified by class"
METRICS = ("uar", "war")


def scores(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(UAR, WAR) in percent of each row of ``preds`` (k, n) against ``labels`` (n,): UAR the
    mean recall over the classes present in ``labels`` (as :func:`mma_dfer.inference.metrics.uar_war`)."""
    labels, preds = np.asarray(labels), np.atleast_2d(preds)
    correct = preds == labels
    classes = np.unique(labels)
    recall = np.stack([correct[:, labels == c].mean(1) for c in classes], 1)
    return 100 * recall.mean(1), 100 * correct.mean(1)


def _redrawn_scores(labels: np.ndarray, preds: np.ndarray, rng: np.random.Generator,
                    resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """(UAR, WAR) of each row of ``preds`` on ``resamples`` stratified redraws: two (k, R) arrays."""
    correct = np.atleast_2d(preds) == labels
    hits, recalls = 0, []
    for c in np.unique(labels):
        members = correct[:, labels == c].astype(np.int8)  # (k, n_c)
        n = members.shape[1]
        draw = rng.integers(0, n, size=(resamples, n))
        count = np.take(members, draw, axis=1).sum(2, dtype=np.int64)  # (k, R) correct clips of c per redraw
        hits = hits + count
        recalls.append(count / n)
    return 100 * np.mean(recalls, 0), 100 * hits / len(labels)


Fold = tuple  # (labels (n,), preds (k, n), weights (k,)): one fold's clips and weighted prediction sets


def bootstrap(folds: Sequence[Fold], resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The mean over ``folds`` of each fold's weighted sum of its prediction sets' UAR and WAR,
    and that statistic on ``resamples`` redraws (each fold's clips redrawn within the fold,
    stratified by class; one redraw for all prediction sets of a fold). Returns
    ``{"uar": (point, replicates), "war": ...}``. Weights 1/k average k seeds; +1/-1 weights
    make a paired difference."""
    rng = np.random.default_rng(seed)
    point = {m: 0.0 for m in METRICS}
    reps = {m: np.zeros(resamples) for m in METRICS}
    for labels, preds, weights in folds:
        labels, preds, weights = np.asarray(labels), np.atleast_2d(preds), np.asarray(weights, dtype=np.float64)
        if preds.shape != (len(weights), len(labels)) or not len(labels):
            raise ValueError(f"a fold of {len(labels)} clips with predictions {preds.shape} and {len(weights)} weights")
        for m, p, r in zip(METRICS, scores(labels, preds), _redrawn_scores(labels, preds, rng, resamples)):
            point[m] += float(weights @ p) / len(folds)
            reps[m] += weights @ r / len(folds)
    return {m: (point[m], reps[m]) for m in METRICS}


def interval(replicates: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval [low, high] of bootstrap replicates."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def mean_intervals(folds: Sequence[tuple], level: float = LEVEL, resamples: int = RESAMPLES,
                   seed: int = SEED) -> dict:
    """{"uar": [low, high], "war": ...} for the mean over folds of the seed-averaged fold scores;
    ``folds``: [(labels, [preds of each seed])]. One fold and one seed: a run's interval."""
    stats = bootstrap([(lab, np.stack(ps), np.full(len(ps), 1 / len(ps))) for lab, ps in folds], resamples, seed)
    return {m: interval(r, level) for m, (_, r) in stats.items()}


def paired_difference(folds: Sequence[tuple], level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = SEED) -> dict:
    """Variant minus reference on the same clips: ``folds`` are [(labels, [variant preds of each
    seed], [reference preds of each seed])]; returns {"uar": {"delta", "ci", "significant"}, ...},
    significant when the interval excludes zero."""
    packed = [(lab, np.stack([*var, *ref]), np.r_[np.full(len(var), 1 / len(var)), np.full(len(ref), -1 / len(ref))])
              for lab, var, ref in folds]
    out = {}
    for m, (point, reps) in bootstrap(packed, resamples, seed).items():
        ci = interval(reps, level)
        out[m] = {"delta": round(point, 4), "ci": ci, "significant": bool(ci[0] > 0 or ci[1] < 0)}
    return out


def verdict(value: Optional[float], ci: Optional[Sequence[float]]) -> Optional[str]:
    """Where a (paper's) number lies against an interval: inside, above or below; None without both."""
    if value is None or ci is None:
        return None
    return "above" if value > ci[1] else "below" if value < ci[0] else "inside"


def align(records: Sequence[dict]) -> tuple[np.ndarray, list]:
    """Runs' stored predictions (each {"index", "label", "pred"}) on the clips all of them scored:
    (labels, [preds of each run]), ordered by dataset index. Clips whose labels disagree mean the
    runs were not tested on the same fold list: a ValueError."""
    common = np.asarray(records[0]["index"])
    for r in records[1:]:
        common = np.intersect1d(common, r["index"])
    if not len(common):
        raise ValueError("no test clip in common")
    labels, preds = None, []
    for r in records:
        at = np.searchsorted(r["index"], common)  # stored in dataset-index order
        lab = np.asarray(r["label"])[at]
        if labels is not None and not np.array_equal(lab, labels):
            raise ValueError(f"{int((lab != labels).sum())} clips with one dataset index but different labels")
        labels = lab
        preds.append(np.asarray(r["pred"])[at])
    return labels, preds
