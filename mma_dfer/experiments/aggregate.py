"""Collect every ``result.json`` under a runs root into per-dataset, per-resolution tables.

The ``aggregate`` command (``launch/aggregate.py``): reads the runs
(:mod:`~mma_dfer.experiments.results`), builds the fold table with its verdicts and intervals
(:mod:`~mma_dfer.experiments.table`, :mod:`~mma_dfer.experiments.verdicts`,
:mod:`~mma_dfer.experiments.uncertainty`) and prints, writes and draws it
(:mod:`~mma_dfer.experiments.formats`, :mod:`~mma_dfer.experiments.plot`). Exit code 0: every
expected fold present; 3: some missing (the table is still written); 2: an error (a corrupt or
duplicate result, folds of different configs; named).
"""
from __future__ import annotations

import argparse
import sys

from mma_dfer import stats
from mma_dfer.experiments.formats import markdown, to_csv
from mma_dfer.experiments.plot import plot
from mma_dfer.experiments.results import AggregateError
from mma_dfer.experiments.table import collect
from mma_dfer.utils import atomic_write_json, atomic_write_text, parse_int_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_root", help="the folder searched for result.json files (e.g. runs)")
    p.add_argument("--json", help="write the aggregate JSON here")
    p.add_argument("--csv", help="write per-fold rows, means, stds and the paper's numbers here")
    p.add_argument("--folds", default="", help="expected folds, e.g. 1-5 (default: each dataset's protocol, 1..K)")
    p.add_argument("--resolutions", default="", help="expected resolutions, e.g. 112,160,224 (default: those found)")
    p.add_argument("--plot", help="also draw one bar chart (PNG) per dataset into this folder")
    p.add_argument("--seeds", default="", help="expected training seeds, e.g. 1,2,3 (default: those found)")
    p.add_argument("--ci-level", type=float, default=stats.LEVEL, help="the intervals' coverage (default 0.95)")
    p.add_argument("--ci-resamples", type=int, default=stats.RESAMPLES,
                   help=f"bootstrap redraws of the test clips (default {stats.RESAMPLES})")
    p.add_argument("--ci-seed", type=int, default=stats.SEED, help="the redraws' seed (default 0)")


def run(args) -> int:
    folds = tuple(parse_int_list(args.folds)) if args.folds else None
    try:
        seeds = parse_int_list(args.seeds) if args.seeds else None
    except ValueError:
        print(f"error: --seeds {args.seeds!r} is not a list of integers (1,2,3 or 1-3)", file=sys.stderr)
        return 2
    if not 0 < args.ci_level < 1 or args.ci_resamples < 100:
        print(f"error: --ci-level {args.ci_level} must lie between 0 and 1 and --ci-resamples {args.ci_resamples} "
              "be at least 100", file=sys.stderr)
        return 2
    try:
        table = collect(args.runs_root, folds, [r for r in args.resolutions.split(",") if r],
                        seeds=seeds, level=args.ci_level,
                        resamples=args.ci_resamples, ci_seed=args.ci_seed)
    except AggregateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(table, folds))
    if args.json:
        atomic_write_json(args.json, table)
    if args.csv:
        atomic_write_text(args.csv, to_csv(table))
    if args.plot:
        for path in plot(table, args.plot):
            print(f"wrote {path}")
    complete = bool(table) and all(row["complete"] for rows in table.values() for row in rows.values())
    if not table:
        print(f"no results under {args.runs_root}", file=sys.stderr)
    return 0 if complete else 3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="aggregate", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))
