"""The fold table: per (dataset, resolution) a row of the per-fold UAR/WAR (1-clip and 2-clip),
their mean and sample std (n-1), the paper's Table 1 numbers, and what is missing or wrong.

A row's expected folds are ``--folds``, or its dataset's protocol 1..K (K as its results record
it, or as the registry, :mod:`mma_dfer.datasets`, has it). A missing fold is named and the row
marked incomplete; its mean is over the folds present, never passed off as the K-fold mean. A
fold run under several training seeds (``fold<k>/seed<s>/``) counts as its seeds' mean. A row
whose folds were made by different configs, or with two results for one run, gets no means
(:mod:`mma_dfer.experiments.verdicts`); each row ends with its uncertainty
(:mod:`mma_dfer.experiments.uncertainty`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from mma_dfer import datasets, stats
from mma_dfer.experiments.results import METRICS, AggregateError, Found, find_runs
from mma_dfer.experiments.uncertainty import add_uncertainty
from mma_dfer.experiments.verdicts import duplicated, mixed_configs, refused
from mma_dfer.runs.identity import group_fingerprint


@dataclass
class Intervals:
    """How the rows' bootstrap intervals are drawn (``aggregate --ci-*``)."""

    level: float = stats.LEVEL
    resamples: int = stats.RESAMPLES
    seed: int = stats.SEED


def run_key(fold: int, seed: int, several_seeds: bool) -> str:
    """How a row names one run: its fold ("3"), or with several seeds in the row "3/seed2"."""
    return f"{fold}/seed{seed}" if several_seeds else str(fold)


def protocol_folds(dataset: str, results) -> tuple:
    """The folds 1..K of a row: K as its results record it (``folds``), else the registry's."""
    ks = {r.get("folds") for _, r in results} - {None}
    return tuple(range(1, max(ks or {datasets.get(dataset).folds}) + 1))


def collect_all(root: str | Path, folds=None, resolutions: Optional[list[str]] = None, exclude=(),
                strict: bool = True, seeds: Optional[list[int]] = None, level: float = stats.LEVEL,
                resamples: int = stats.RESAMPLES, ci_seed: int = stats.SEED) -> tuple[dict, list]:
    """The aggregate JSON (``{dataset: {resolution: {"folds": {fold: {...}}, "uar_mean", ...}}}``)
    and the problems that are not in it. ``folds``: the folds every row expects (None: each
    dataset's protocol, :func:`protocol_folds`; the row's ``expected``). Runs under the ``exclude`` folders are left out (the
    report: sweeps apart from loose runs). ``strict``: the first problem is an AggregateError;
    otherwise a corrupt result is its fold's failure (``row["corrupt"]``, or a problem when its
    folder names no fold), and a row of mixed configs or with two results for one run has no
    means and says why (``row["mixed"]``, ``row["duplicate"]``; both are problems too); the
    duplicated run's files are ``row["duplicates"]``, none of them counted. A row may hold
    several training seeds per fold (``seeds``: the expected ones, default those found): a
    fold's numbers are then its seeds' mean, and each run is listed under ``row["runs"]`` by its
    run key (:func:`run_key`). The intervals (:func:`add_uncertainty`) use ``level``,
    ``resamples`` and ``ci_seed``."""
    root = Path(root)
    if not root.is_dir():
        raise AggregateError(f"runs root {root} does not exist")
    problems: list = []

    def problem(message: str) -> None:
        if strict:
            raise AggregateError(message)
        problems.append(message)

    found = find_runs(root, [Path(f) for f in exclude], strict, problem)
    cells = found.cells()
    cells |= {(d, res) for d in {c[0] for c in cells} for res in (resolutions or [])}
    table: dict = {}
    for dataset, res in sorted(cells, key=lambda c: (c[0], int(c[1]))):
        row_folds = folds or protocol_folds(dataset, [v for k, v in found.results.items() if k[:2] == (dataset, res)])
        row = make_row(f"{dataset} res {res}", datasets.paper(dataset, res), row_folds,
                       found.row(dataset, res, row_folds), seeds, problem, Intervals(level, resamples, ci_seed))
        table.setdefault(dataset, {})[res] = row
    return table, problems


def make_row(label: str, paper, row_folds, runs: Found, seeds: Optional[list[int]], problem: Callable[[str], None],
             intervals: Intervals) -> dict:
    """One row of the table from its runs ({(fold, seed): ...}); ``paper``: the paper's Table 1
    numbers of its cell (or None); ``problem`` takes what is wrong with it (raising in strict mode)."""
    present = runs.results
    row_seeds = sorted({s for part in runs.parts() for _, s in part} | set(seeds or []))

    def key(f, s):
        return run_key(f, s, len(row_seeds) > 1)

    row: dict = {"folds": _fold_means(row_folds, present), "expected": list(row_folds)}
    row["duplicates"] = {key(*fs): [str(p) for p in paths] for fs, paths in sorted(runs.duplicates.items())}
    row["duplicate"] = duplicated(label, row["duplicates"])
    row["missing"] = [f for f in row_folds
                      if str(f) not in row["folds"] and all(fs[0] != f for fs in runs.duplicates)]
    row["failed"] = {key(*fs): str(folder) for fs, folder in sorted(runs.failed.items())}
    row["corrupt"] = {key(*fs): why for fs, (_, why) in sorted(runs.corrupt.items())}
    row["failed"].update({key(*fs): str(folder) for fs, (folder, _) in sorted(runs.corrupt.items())})
    expected = [(f, s) for f in row_folds for s in (seeds or row_seeds or [1])]
    row["complete"] = not row["missing"] and not runs.duplicates and all(fs in present for fs in expected)
    mixed = mixed_configs(label, {key(*fs): v for fs, v in present.items()})
    if mixed:
        problem(mixed)
    row["mixed"] = mixed
    row["config_fingerprint"] = (group_fingerprint(next(iter(present.values()))[1]["run_identity"])
                                 if present and not mixed else None)
    for m in METRICS:
        vals = [v[m] for v in row["folds"].values() if v[m] is not None]
        row[f"{m}_mean"], row[f"{m}_std"] = _stats([] if refused(row) else vals)
    row["paper"] = dict(zip(METRICS, paper)) if paper else None
    row["seeds"] = row_seeds  # found (done, failed) or expected
    absent = [fs for fs in expected if fs not in present and fs not in runs.duplicates]
    for why in add_uncertainty(row, {key(*fs): (fs, path, r) for fs, (path, r) in present.items()}, absent, key,
                               intervals.level, intervals.resamples, intervals.seed):
        problem(f"{label}: {why}")
    return row


def _fold_means(row_folds, present: dict) -> dict:
    """Per fold present: its seeds' mean of each metric, and its first run's file and fingerprint."""
    out = {}
    for f in row_folds:
        runs = [(path, r) for (fold, _), (path, r) in sorted(present.items()) if fold == f]
        if runs:
            out[str(f)] = {**{k: _mean_of([r.get(k) for _, r in runs]) for k in METRICS},
                           "file": str(runs[0][0]), "config_fingerprint": runs[0][1]["config_fingerprint"]}
    return out


def _stats(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _mean_of(values: list) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def collect(root: str | Path, folds=None, resolutions: Optional[list[str]] = None, exclude=(), **uncertainty) -> dict:
    """:func:`collect_all` in strict mode: the table, or an AggregateError for the first problem;
    ``uncertainty``: its seeds, level, resamples and ci_seed."""
    return collect_all(root, folds, resolutions, exclude, strict=True, **uncertainty)[0]
