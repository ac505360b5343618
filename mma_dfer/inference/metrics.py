"""UAR / WAR as DFER papers report them, and helpers to gather predictions across ranks."""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """counts[i, j]: clips of true class i predicted as j."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def uar_war(y_true, y_pred, num_classes: int) -> tuple[float, float]:
    """(UAR, WAR) in percent.

    WAR is the overall accuracy; UAR the mean recall over the classes that occur in
    ``y_true`` (a class with no test clip has no recall: it is left out rather than counted as
    0 or NaN). A class that is never *predicted* simply has recall 0."""
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        raise ValueError("uar_war of an empty prediction set")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(1)
    present = support > 0
    recall = np.diag(cm)[present] / support[present]
    return float(100 * recall.mean()), float(100 * np.trace(cm) / cm.sum())


def merge_shards(shards: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Join per-rank ``(indices, values)`` into one array ordered by dataset index.

    A distributed sampler pads the last shard with repeats of the first indices; those
    duplicates are dropped, so every clip counts exactly once."""
    idx = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in shards])
    val = np.concatenate([np.asarray(v) for _, v in shards])
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order]
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    return idx[keep], val[keep]


def shard(n: int, rank: int, world: int) -> list[int]:
    """Contiguous evaluation shard of ``range(n)`` for ``rank``, padded to ceil(n / world) items
    with repeats of its last index (of index n - 1 for a shard past the end): every rank gets
    as many items, and the repeats are dropped when the shards are merged."""
    per = -(-n // world)
    own = list(range(rank * per, min(n, (rank + 1) * per)))
    return own + [own[-1] if own else n - 1] * (per - len(own))
