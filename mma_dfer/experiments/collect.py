"""What the report shows, read off a runs root: the sweeps (their copied definitions and their
variants' runs), the runs outside any sweep, and every expected run that is missing or failed.

Per variant the numbers come from the aggregator (:func:`mma_dfer.experiments.table.collect_all`
on the variant's folder), so the report and ``launch/aggregate.py`` agree to the digit. A run is
*done* (valid ``result.json``), *failed* (a run folder with its ``config.yaml`` but no result,
or a corrupt result, with the reason), *duplicate* (one of two or more results for one fold:
the aggregator counts none of them) or *missing* (expected by its sweep, no folder); none is
dropped. Where the aggregator stops with an error (a corrupt file, a duplicate, folds of
different configs), the report still renders: the problem is shown where it is (once), and a
row the aggregator refuses to average (:func:`mma_dfer.experiments.verdicts.refused`) shows no
mean, in its tables and its figures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mma_dfer import datasets
from mma_dfer.experiments.results import METRICS, AggregateError, read_result
from mma_dfer.experiments.sweep import DEFINITION, Sweep, SweepError, Variant, load_sweep, reference_variant
from mma_dfer.experiments.table import collect_all, run_key
from mma_dfer.experiments.uncertainty import paired_rows
from mma_dfer.experiments.verdicts import refused

LOOSE = "runs outside any sweep"
STATUSES = ("done", "failed", "duplicate", "missing")


class ReportError(RuntimeError):
    """The runs root cannot be reported on (absent, corrupt result, bad sweep copy); names the file."""


@dataclass
class Run:
    group: str  # "<sweep>/<variant>" or LOOSE
    dataset: str
    resolution: str
    fold: int
    status: str  # one of STATUSES
    folder: Optional[Path] = None
    result: Optional[dict] = None
    detail: str = ""  # why it is failed or missing
    seed: Optional[int] = None  # set when its row has several training seeds

    @property
    def key(self) -> str:
        """Unique in the page: a run by its seed when its row has several, a duplicated fold's
        runs also by their folder."""
        key = f"{self.group}/{self.dataset}/res{self.resolution}/fold{self.fold}" + (
            f"/seed{self.seed}" if self.seed is not None else "")
        return key + (f"@{self.folder}" if self.status == "duplicate" else "")


@dataclass
class Group:
    """One variant of a sweep (or the loose runs): its aggregate table and its runs."""

    name: str  # "<sweep>/<variant>" or LOOSE
    variant: Optional[Variant]
    table: dict  # the aggregator's {dataset: {res: row}}
    runs: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # the aggregator's, that belong to no run
    # (dataset, res) -> the paired difference from the sweep's reference variant (uncertainty.paired_rows)
    differences: dict = field(default_factory=dict)


@dataclass
class SweepResult:
    sweep: Sweep
    folder: Path
    groups: list  # Group per variant, the definition's order, then variants found but not defined
    reference: Optional[str] = None  # the variant the paired differences are taken against


@dataclass
class Report:
    root: Path
    sweeps: list
    loose: Optional[Group]

    def groups(self) -> list[Group]:
        return [g for s in self.sweeps for g in s.groups] + ([self.loose] if self.loose else [])

    def runs(self) -> list[Run]:
        return [r for g in self.groups() for r in g.runs]


def _table(folder: Path, exclude=(), seeds=None) -> tuple[dict, list]:
    if not folder.is_dir():
        return {}, []
    try:
        table, problems = collect_all(folder, exclude=exclude, strict=False, seeds=seeds)
    except AggregateError as e:
        raise ReportError(str(e)) from None
    # a row's own verdict (mixed configs, a duplicated fold) is shown on its row, not twice
    on_rows = {row.get(k) for rows in table.values() for row in rows.values() for k in ("mixed", "duplicate")}
    return table, [p for p in problems if p not in on_rows and not _duplicate_message(p, table)]


def _duplicate_message(problem: str, table: dict) -> bool:
    """Whether ``problem`` is the aggregator's line about a fold that a row lists as duplicated."""
    files = {f for rows in table.values() for row in rows.values() for paths in row.get("duplicates", {}).values()
             for f in paths}
    return problem.startswith("two results for ") and any(problem.endswith(f) for f in files)


def _split(key: str) -> tuple[int, Optional[int]]:
    """A row's run key ("3" or "3/seed2", :func:`mma_dfer.experiments.table.run_key`) -> (fold, seed)."""
    fold, _, seed = key.partition("/seed")
    return int(fold), int(seed) if seed else None


def _runs(name: str, table: dict, expected: dict, seeds=None) -> list[Run]:
    """Every run of a group: found (done/failed) and expected-but-absent (missing).
    ``expected``: {(dataset, res): [folds]}, each fold once per seed of ``seeds`` when given."""
    cells = {(d, res): row for d, rows in table.items() for res, row in rows.items()}
    runs = []
    for d, res in sorted(set(cells) | set(expected), key=lambda c: (c[0], int(c[1]))):
        row = cells.get((d, res), {"runs": {}, "failed": {}, "seeds": []})
        dups = row.get("duplicates", {})
        several = len(set(row["seeds"]) | set(seeds or [])) > 1
        wanted = {run_key(f, s, several) for f in expected.get((d, res), []) for s in (seeds or [1])}
        keys = sorted(set(row["runs"]) | set(row["failed"]) | set(dups) | wanted,
                      key=lambda k: (_split(k)[0], _split(k)[1] or 0))
        for key in keys:
            fold, seed = _split(key)
            if key in dups:
                for file in dups[key]:
                    others = ", ".join(x for x in dups[key] if x != file)
                    runs.append(Run(name, d, res, fold, "duplicate", Path(file).parent, read_result(Path(file)),
                                    detail=f"another result for this run: {others}; neither is averaged", seed=seed))
            elif key in row["runs"]:
                path = Path(row["runs"][key]["file"])
                runs.append(Run(name, d, res, fold, "done", path.parent, read_result(path), seed=seed))
            elif key in row["failed"]:
                folder = Path(row["failed"][key])
                detail = row.get("corrupt", {}).get(key) or _failure(folder)
                runs.append(Run(name, d, res, fold, "failed", folder, detail=detail, seed=seed))
            else:
                runs.append(Run(name, d, res, fold, "missing", detail="no run folder", seed=seed))
    return runs


def _log_records(folder: Path) -> list:
    """The records of a run's ``log.jsonl`` in order; a line cut off by a crash is left out."""
    log = folder / "log.jsonl"
    records = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _failure(folder: Path) -> str:
    """How far a run without a result got, from its log."""
    records = _log_records(folder)
    last = records[-1] if records else {}
    if not last:
        return "config.yaml written, nothing logged (stopped before the first logged step)"
    return f"no result.json; last logged step {last.get('step')}" + (
        f" (epoch {last['epoch']})" if "epoch" in last else "")


def _sweep(folder: Path) -> SweepResult:
    try:
        sweep = load_sweep(folder / DEFINITION)
    except SweepError as e:
        raise ReportError(str(e)) from None
    expected = {(d, str(r)): list(sweep.folds) for d in sweep.datasets for r in sweep.resolutions}
    defined = [v.name for v in sweep.variants]
    extra = sorted(p.name for p in folder.iterdir()
                   if p.is_dir() and p.name not in defined and any(p.rglob("config.yaml")))
    groups = []
    for name in defined + extra:
        variant = sweep.variant(name) if name in defined else None
        table, problems = _table(folder / name, seeds=sweep.seeds)
        group = Group(f"{sweep.name}/{name}", variant, table, problems=problems)
        group.runs = _runs(group.name, table, expected if variant else {}, sweep.seeds)
        groups.append(group)
    reference = reference_variant(sweep).name if sweep.layout != "table1" else None
    ref = next((g for g in groups if g.variant and g.variant.name == reference), None)
    for g in groups if ref else ():
        if g is not ref:
            for d, res in {(r.dataset, r.resolution) for r in g.runs if r.status == "done"}:
                try:
                    g.differences[(d, res)] = paired_rows(_by_fold(g, d, res), _by_fold(ref, d, res))
                except ValueError as e:
                    g.problems.append(f"{g.name} {d} res {res}: no difference from {ref.name}: {e}")
    return SweepResult(sweep, folder, groups, reference)


def _by_fold(group: Group, dataset: str, res: str) -> dict:
    """{fold: [results of its seeds]} of a group's done runs in one (dataset, res) cell, unless
    its row was not averaged (folds of different configs)."""
    row = group.table.get(dataset, {}).get(res)
    out: dict = {}
    for r in group.runs:
        if r.status == "done" and (r.dataset, r.resolution) == (dataset, res) and row and not refused(row):
            out.setdefault(r.fold, []).append(r.result)
    return out


def read_report(root: str | Path) -> Report:
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"runs root {root} does not exist")
    definitions = sorted(root.rglob(DEFINITION)) if not (root / DEFINITION).is_file() else [root / DEFINITION]
    sweeps = [_sweep(d.parent) for d in definitions]
    loose_table, problems = _table(root, exclude=[s.folder for s in sweeps])
    loose = None
    if loose_table or problems:
        expected = {(d, res): row["expected"] for d, rows in loose_table.items() for res, row in rows.items()}
        loose = Group(LOOSE, None, loose_table, _runs(LOOSE, loose_table, expected), problems)
    return Report(root, sweeps, loose)


def paper_table1(dataset: str, resolution: str) -> Optional[dict]:
    """The paper's Table 1 numbers (uar, war, uar_2clip, war_2clip) for a cell, or None."""
    p = datasets.paper(dataset, resolution)
    return dict(zip(METRICS, p)) if p else None


def read_curves(folder: Path) -> tuple[dict, dict]:
    """Training curves from ``log.jsonl``: per logged step (loss, lr) and per test evaluation
    (UAR, WAR), x in epochs. A step logged twice (a resumed run repeats the steps after its last
    checkpoint) keeps its last value. Steps per epoch come from the evaluation lines (they carry
    the epoch); without any, x stays in steps."""
    rows: dict = {}
    for d in _log_records(folder):
        if isinstance(d, dict) and isinstance(d.get("step"), int):
            rows.setdefault(d["step"], {}).update(d)
    per_epoch = [r["step"] / r["epoch"] for r in rows.values() if r.get("epoch")]
    scale = per_epoch[0] if per_epoch else 1.0
    steps = {"x": [], "loss": [], "lr": []}
    evals = {"x": [], "uar": [], "war": []}
    for step in sorted(rows):
        r = rows[step]
        if "train/loss" in r:
            steps["x"].append(step / scale)
            steps["loss"].append(r["train/loss"])
            steps["lr"].append(r.get("train/lr"))
        uar = r.get("test/uar", r.get("eval/uar"))
        if uar is not None:
            evals["x"].append(r.get("epoch", step / scale))
            evals["uar"].append(uar)
            evals["war"].append(r.get("test/war", r.get("eval/war")))
    steps["unit"] = "epoch" if per_epoch else "step"
    return steps, evals
