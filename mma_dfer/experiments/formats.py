"""The fold table as text: the Markdown the ``aggregate`` command prints (the means, then the
intervals of the fold means with the paper verdicts) and the CSV it writes."""
from __future__ import annotations

import csv
import io

from mma_dfer import datasets, stats
from mma_dfer.experiments.results import METRICS


def _cell(mean, std, complete: bool, n: int, total: int) -> str:
    if mean is None:
        return "-"
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")
    return text if complete else f"{text} (incomplete: {n}/{total} folds)"


def title(dataset: str) -> str:
    """A dataset's name as the tables print it (DFEW, CREMA-D, ...)."""
    return datasets.REGISTRY[dataset].title if dataset in datasets.REGISTRY else dataset.upper()


def markdown(table: dict, expected=None) -> str:
    """The tables; ``expected`` as ``folds`` for :func:`~mma_dfer.experiments.table.collect_all` (None: each row's expected folds)."""
    lines = []
    for dataset, rows in table.items():
        folds = expected or sorted({f for row in rows.values() for f in row["expected"]})
        lines += [f"### {title(dataset)}", "",
                  "| res | " + " | ".join(f"fold {f} UAR/WAR" for f in folds)
                  + " | UAR | WAR | UAR* | WAR* | paper UAR/WAR | paper* |",
                  "|---|" + "---|" * (len(folds) + 6)]
        for res, row in rows.items():
            cells = []
            for f in folds:
                r = row["folds"].get(str(f))
                cells.append(f"{r['uar']:.2f}/{r['war']:.2f}" if r else
                             ("duplicate" if str(f) in row["duplicates"] else
                              "failed" if str(f) in row["failed"] else "missing"))
            n = len(row["folds"])
            means = [_cell(row[f"{m}_mean"], row[f"{m}_std"], row["complete"], n, len(folds)) for m in METRICS]
            p = row["paper"]
            paper = [f"{p['uar']:.2f}/{p['war']:.2f}", f"{p['uar_2clip']:.2f}/{p['war_2clip']:.2f}"] if p else ["-", "-"]
            lines.append(f"| {res} | " + " | ".join(cells + means + paper) + " |")
        for res, row in rows.items():
            if row["missing"]:
                lines.append(f"\n{title(dataset)} {res}: missing folds {row['missing']}"
                             + (f"; failed runs: {row['failed']}" if row["failed"] else ""))
        lines.append("")
    lines.append("mean ± sample std (n-1) over folds; * = 2-clip average; paper = MMA-DFER Table 1")
    return "\n".join(lines) + "\n\n" + uncertainty_markdown(table)


def _ci_text(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def uncertainty_markdown(table: dict) -> str:
    """Per row: the interval of the fold mean, the seeds and their spread, and where the paper's
    number lies (inside / above / below that interval)."""
    lines = []
    level = next((row["ci_settings"]["level"] for rows in table.values() for row in rows.values()), stats.LEVEL)
    for dataset, rows in table.items():
        lines += [f"### {title(dataset)}: {100 * level:g}% intervals of the fold mean", "",
                  "| res | UAR | WAR | UAR* | WAR* | seeds | seed std UAR/WAR | paper (UAR, WAR, UAR*, WAR*) |",
                  "|---|---|---|---|---|---|---|---|"]
        for res, row in rows.items():
            cis = [_ci_text(row[f"{m}_ci"]) for m in METRICS]
            spread = "/".join("-" if row[f"{m}_seed_std"] is None else f"{row[f'{m}_seed_std']:.2f}"
                              for m in ("uar", "war"))
            verdict = ", ".join(row["verdict"][m] or "-" for m in METRICS) if row["verdict"] else "-"
            seeds = ",".join(map(str, row["seeds"])) or "-"
            lines.append(f"| {res} | " + " | ".join(cis + [seeds, spread, verdict]) + " |")
        lines.append("")
    lines.append("interval: stratified bootstrap over each fold's test clips (seeds scored on the same redraws); "
                 "paper verdict: the paper's number inside, above or below it")
    return "\n".join(lines)


CI_COLUMNS = [f"{m}_ci_{end}" for m in METRICS for end in ("low", "high")]


def _ci_cells(r: dict) -> list:
    return [(r.get(f"{m}_ci") or [None, None])[i] for m in METRICS for i in (0, 1)]


def to_csv(table: dict) -> str:
    """Per row: the folds (their seeds' mean), mean, std and paper rows as always; at the end of
    each line the seed and the intervals (a fold's, a run's, the fold mean's), and on the paper
    line the verdicts. Several seeds add a line per run (fold "3/seed2") and a ``seed_std`` line."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "resolution", "fold", *METRICS, "seed", *CI_COLUMNS, *[f"{m}_verdict" for m in METRICS]])
    for dataset, rows in table.items():
        for res, row in rows.items():
            several = len(row["seeds"]) > 1
            only = row["seeds"][0] if len(row["seeds"]) == 1 else None
            for fold, r in row["folds"].items():
                w.writerow([dataset, res, fold, *[r[m] for m in METRICS], only, *_ci_cells(r)])
            for key, r in row["runs"].items() if several else ():
                w.writerow([dataset, res, key, *[r[m] for m in METRICS], r["seed"], *_ci_cells(r)])
            w.writerow([dataset, res, "mean", *[row[f"{m}_mean"] for m in METRICS], only, *_ci_cells(row)])
            w.writerow([dataset, res, "std", *[row[f"{m}_std"] for m in METRICS]])
            if several:
                w.writerow([dataset, res, "seed_std", *[row[f"{m}_seed_std"] for m in METRICS]])
            if row["paper"]:
                w.writerow([dataset, res, "paper", *[row["paper"][m] for m in METRICS], None, *[None] * len(CI_COLUMNS),
                            *[(row["verdict"] or {}).get(m) for m in METRICS]])
    return buf.getvalue()

