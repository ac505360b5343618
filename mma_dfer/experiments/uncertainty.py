"""Every row's uncertainty (issue 27), from the per-clip predictions each ``result.json`` stores;
the maths is :mod:`mma_dfer.stats`. Per run its own interval, per fold and for the fold mean the
bootstrap interval (a fold's clips redrawn within the fold, its seeds scored on the same redraw),
the seeds' spread beside the folds', the paper verdict of each Table 1 cell, and
:func:`paired_rows`: a sweep variant's paired difference from its reference row."""
from __future__ import annotations

import statistics
from typing import Optional

from mma_dfer import stats
from mma_dfer.experiments.results import METRICS
from mma_dfer.experiments.verdicts import refused


def fold_predictions(runs: list, suffix: str = "") -> Optional[tuple]:
    """(labels, [preds of each run]) of one fold's results (its seeds, or a variant's and its
    reference's) on their common clips; None when a run stored no predictions (written before
    the intervals). Runs tested on different clip lists: a ValueError."""
    records = [r.get("predictions" + suffix) for r in runs]
    return None if not records or any(x is None for x in records) else stats.align(records)


def add_uncertainty(row: dict, runs: dict, absent: list, key, level: float = stats.LEVEL,
                    resamples: int = stats.RESAMPLES, seed: int = stats.SEED) -> list[str]:
    """A row's uncertainty, added at the end of it (:mod:`mma_dfer.stats`): per run (``runs``:
    {run key: ((fold, seed), path, result)}) the result's own interval; per fold and for the mean over
    the folds the bootstrap interval (each fold's clips redrawn within the fold, its seeds scored
    on the same redraw); the spread of the seeds' fold means (sample std);
    the paper verdict of each Table 1 cell; the (fold, seed) runs still ``absent``. Returns the
    problems (a fold whose runs were tested on different clips has no interval)."""
    row["missing_runs"] = [key(f, s) for f, s in absent]
    row["runs"] = {k: {**{m: r.get(m) for m in METRICS}, "fold": f, "seed": s, "file": str(path),
                       **{f"{m}_ci": (r.get("intervals") or {}).get(m) for m in METRICS}}
                   for k, ((f, s), path, r) in sorted(runs.items())}
    row["ci_settings"] = {"level": level, "resamples": resamples, "seed": seed, "method": stats.METHOD}
    _seed_spread(row, runs)
    by_fold: dict = {}
    for (f, s), _, r in runs.values():
        by_fold.setdefault(f, []).append(r)
    problems = []
    for suffix in ("", "_2clip"):
        problems += _intervals(row, by_fold, suffix, level, resamples, seed)
    row["verdict"] = {m: stats.verdict(row["paper"][m], row[f"{m}_ci"]) for m in METRICS} if row["paper"] else None
    return problems


def _seed_spread(row: dict, runs: dict) -> None:
    """``<metric>_seed_std``: the sample std of the seeds' means over the folds (None: one seed,
    or a row not averaged)."""
    for m in METRICS:
        per_seed = {}
        for (f, s), _, r in runs.values():
            if r.get(m) is not None:
                per_seed.setdefault(s, []).append(r[m])
        means = [statistics.fmean(v) for v in per_seed.values()]
        row[f"{m}_seed_std"] = statistics.stdev(means) if len(means) > 1 and not refused(row) else None


def _intervals(row: dict, by_fold: dict, suffix: str, level: float, resamples: int, seed: int) -> list[str]:
    """The 1-clip (``suffix`` "") or 2-clip ("_2clip") intervals of each fold ({fold: results})
    and of the fold mean; the folds whose runs were tested on different clips, as problems."""
    problems = []
    folds = {}
    for f, rs in sorted(by_fold.items()):
        try:
            folds[f] = fold_predictions(rs, suffix)
        except ValueError as e:
            folds[f] = None
            problems.append(f"fold {f}: no interval ({e})")
    for f, preds in folds.items():
        ci = stats.mean_intervals([preds], level, resamples, seed) if preds else {}
        for m in stats.METRICS:
            row["folds"][str(f)][f"{m}{suffix}_ci"] = ci.get(m)
    ok = folds and all(p is not None for p in folds.values()) and not refused(row)
    ci = stats.mean_intervals(list(folds.values()), level, resamples, seed) if ok else {}
    for m in stats.METRICS:
        row[f"{m}{suffix}_ci"] = ci.get(m)
    return problems


def paired_rows(variant: dict, reference: dict, level: float = stats.LEVEL, resamples: int = stats.RESAMPLES,
                seed: int = stats.SEED) -> Optional[dict]:
    """A variant's difference from a reference row over the folds both ran ({fold: [results of
    its seeds]} each), with its paired bootstrap interval (both scored on the same redrawn clips
    of each fold, :func:`mma_dfer.stats.paired_difference`): {"uar": {"delta", "ci",
    "significant"}, "war": ..., "folds": [...]}; None when they share no fold or a run stored no
    predictions. Folds tested on different clip lists: a ValueError."""
    folds = sorted(set(variant) & set(reference))
    per_fold = [fold_predictions([*variant[f], *reference[f]]) for f in folds]
    if not folds or any(p is None for p in per_fold):
        return None
    split = [(labels, preds[:len(variant[f])], preds[len(variant[f]):]) for f, (labels, preds) in zip(folds, per_fold)]
    return {**stats.paired_difference(split, level, resamples, seed), "folds": folds}
