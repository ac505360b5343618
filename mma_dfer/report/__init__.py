"""``launch/report.py``: one self-contained HTML page of every run under a runs root, beside the
paper's Tables 1-7 (see :mod:`mma_dfer.experiments.collect` and :mod:`mma_dfer.report.html`).

What the page shows is gathered by :mod:`mma_dfer.experiments.collect`; this package only renders
it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mma_dfer.experiments.collect import STATUSES, ReportError, read_report
from mma_dfer.experiments.verdicts import refused
from mma_dfer.report.html import render
from mma_dfer.utils import atomic_write_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_root", help="the folder of the runs and sweeps (e.g. runs)")
    p.add_argument("--out", help="the HTML file (default: RUNS_ROOT/report.html)")


def run(args) -> int:
    out = Path(args.out or Path(args.runs_root) / "report.html")
    try:
        report = read_report(args.runs_root)
        atomic_write_text(out, render(report))
    except (ReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs = report.runs()
    counts = ", ".join(f"{n} {s}" for s in STATUSES if (n := sum(r.status == s for r in runs)) or s != "duplicate")
    print(f"wrote {out}: {len(runs)} runs ({counts}), {len(report.sweeps)} sweep(s)")
    for r in runs:
        if r.status != "done":
            print(f"  {r.status}: {r.key}" + (f" ({r.detail})" if r.detail else ""))
    for g in report.groups():
        for rows in g.table.values():
            for row in rows.values():
                if refused(row):
                    print(f"  not averaged: {refused(row)}")
        for problem in g.problems:
            print(f"  problem: {problem}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="report", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))
