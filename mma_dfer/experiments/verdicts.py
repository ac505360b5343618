"""Why a row of the fold table gets no means: its folds were made by different configs, or a run
of it has two results. The aggregator writes the verdict into the row; the report shows it and
draws the row without a mean, as the aggregator left it."""
from __future__ import annotations

from typing import Optional

from mma_dfer.runs.identity import PER_FOLD, PER_SEED, differences, group_fingerprint


def mixed_configs(label: str, results: dict) -> Optional[str]:
    """Why the folds ``results`` ({fold or run key: (path, result)}) of one row must not be
    averaged (they were made by different configs: which folds, which fields), or None."""
    groups: dict = {}
    for fold, (path, r) in sorted(results.items()):
        groups.setdefault(group_fingerprint(r["run_identity"]), []).append((fold, path, r))
    if len(groups) < 2:
        return None
    (fp0, first), *others = groups.items()
    base_fold, base_path, base = first[0]
    lines = [f"{label}: its folds were made by different configs, not averaged: "
             + "; ".join(f"fold(s) {[f for f, _, _ in runs]} shared config fingerprint {fp}"
                         for fp, runs in groups.items())]
    for _, runs in others:
        fold, path, r = runs[0]
        lines.append(f"  {path} against {base_path}:")
        lines += ["    " + d for d in differences(base["run_identity"], r["run_identity"], f"fold {base_fold}",
                                                  f"in fold {fold}", skip=PER_FOLD + PER_SEED)]
    return "\n".join(lines)


def duplicated(label: str, duplicates: dict) -> Optional[str]:
    """Why a row with two or more results for a run ({run key: [their files]}) is not averaged, or None."""
    if not duplicates:
        return None
    return (f"{label}: " + "; ".join(f"fold {k} has {len(paths)} results ({', '.join(paths)})"
                                     for k, paths in duplicates.items())
            + ": not averaged (keep one run per fold; move the others out of the runs root)")


def refused(row: dict) -> Optional[str]:
    """Why a row has no means (its folds were made by different configs, or a run has two
    results), or None: the aggregator's verdict, which the report shows and draws as it is."""
    return "\n".join(row[k] for k in ("mixed", "duplicate") if row.get(k)) or None
