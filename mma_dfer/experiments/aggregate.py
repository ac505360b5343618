"""Collect every ``result.json`` under a runs root into per-dataset, per-resolution tables.

Per (dataset, resolution): the per-fold UAR/WAR (1-clip and 2-clip), mean and sample std (n-1)
over the folds, and the paper's Table 1 numbers beside them. A fold that is missing (no
result, or a run folder whose training failed) is listed by name and the row is marked
incomplete; its mean is over the folds present and flagged, never passed off as the K-fold
mean (a row's expected folds: ``--folds``, or its dataset's protocol 1..K, K as its results
record it or as the registry, :mod:`mma_dfer.datasets`, has it). The folds of a row must have been made by one config (the same run identity but for
the fold: :func:`mma_dfer.runs.identity.group_fingerprint`); folds of different configs are never
averaged. Two results for one fold, a corrupt result or folds of different configs are errors
naming the files (``strict``), or, for the report, problems recorded in the table.

Every row also carries its uncertainty (issue 27; the maths in :mod:`mma_dfer.stats`, from the
per-clip predictions each ``result.json`` stores): the bootstrap interval of each fold and of the
fold mean, the paper verdict of each Table 1 cell, and, when the folds were run under several
training seeds (``fold<k>/seed<s>/``), the seeds' spread beside the folds' (a fold's number is
then its seeds' mean). :func:`paired_rows` is a sweep variant's paired difference from its
reference row.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Optional

from mma_dfer import datasets, stats
from mma_dfer.runs.identity import PER_FOLD, PER_SEED, differences, group_fingerprint
from mma_dfer.utils import atomic_write_json, atomic_write_text, parse_int_list

REQUIRED = ("dataset", "fold", "resolution", "uar", "war")
METRICS = ("uar", "war", "uar_2clip", "war_2clip")
HEX = re.compile(r"^[0-9a-f]{8,64}$")



class AggregateError(RuntimeError):
    """A result file is corrupt, a fold has two results, or a row mixes configs; names the files."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_result(path: Path) -> dict:
    """A result file whose every field the tables use is well-formed (dataset, fold, resolution,
    metrics, run identity); an :class:`AggregateError` naming the file and the field otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AggregateError(f"{path}: corrupt result file ({e})") from None
    missing = [k for k in REQUIRED if not isinstance(data, dict) or k not in data]
    if missing:
        raise AggregateError(f"{path}: corrupt result file (missing {missing})")
    for k in METRICS:
        v = data.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise AggregateError(f"{path}: corrupt result file ({k}={v!r} is not a number)")
    if data["dataset"] not in datasets.NAMES:
        raise AggregateError(f"{path}: corrupt result file (dataset={data['dataset']!r} is not one of "
                             f"{list(datasets.NAMES)})")
    k = data.get("folds", datasets.get(data["dataset"]).folds)
    if not _is_int(k) or k < 1:
        raise AggregateError(f"{path}: corrupt result file (folds={k!r} is not a number of folds)")
    if not _is_int(data["fold"]) or not 1 <= data["fold"] <= k:
        raise AggregateError(f"{path}: corrupt result file (fold={data['fold']!r} is not a fold 1-{k})")
    if not _is_int(data["resolution"]) or data["resolution"] <= 0:
        raise AggregateError(f"{path}: corrupt result file (resolution={data['resolution']!r} is not a size)")
    if not _is_int(data.get("seed", 1)):
        raise AggregateError(f"{path}: corrupt result file (seed={data['seed']!r} is not an integer)")
    for key in ("predictions", "predictions_2clip"):
        if data.get(key) is not None and not _predictions_ok(data[key]):
            raise AggregateError(f"{path}: corrupt result file ({key} is not three equally long integer lists "
                                 "index, label, pred in dataset-index order)")
    fp, identity = data.get("config_fingerprint"), data.get("run_identity")
    if fp is None or identity is None:
        raise AggregateError(f"{path}: no run identity (config_fingerprint, run_identity): written before run "
                             "identities or by hand, so it cannot be checked against the other folds")
    if not isinstance(fp, str) or not HEX.match(fp) or not isinstance(identity, dict):
        raise AggregateError(f"{path}: corrupt result file (config_fingerprint or run_identity malformed)")
    return data


def _predictions_ok(p) -> bool:
    if not isinstance(p, dict) or not all(isinstance(p.get(k), list) for k in ("index", "label", "pred")):
        return False
    lists = [p["index"], p["label"], p["pred"]]
    return (len({len(x) for x in lists}) == 1 and all(_is_int(v) for x in lists for v in x)
            and all(a < b for a, b in zip(p["index"], p["index"][1:])))


def seed_of(result: dict) -> int:
    """The training seed of a result (results written before seeds were recorded: the config's
    default, 1)."""
    return int(result.get("seed", 1))


def _under(path: Path, folders) -> bool:
    return any(path.is_relative_to(f) for f in folders)


def _run_key(folder: Path) -> Optional[tuple]:
    """(dataset, res, fold, seed) of a run folder, read off its saved ``config.yaml``; None if unreadable."""
    import yaml

    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        data = cfg.get("data", {})
        return str(data["dataset"]), str(int(data["resolution"])), int(data["fold"]), int(
            (cfg.get("train") or {}).get("seed", 1))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None


def _failed_runs(root: Path, exclude=()) -> dict:
    """Run folders (a saved config.yaml) without a result: (dataset, res, fold, seed) -> folder."""
    out = {}
    for cfg_path in root.rglob("config.yaml"):
        if (cfg_path.parent / "result.json").exists() or _under(cfg_path, exclude):
            continue
        key = _run_key(cfg_path.parent)
        if key is not None:
            out[key] = cfg_path.parent
    return out


def _stats(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


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


def protocol_folds(dataset: str, results) -> tuple:
    """The folds 1..K of a row: K as its results record it (``folds``), else the registry's."""
    ks = {r.get("folds") for _, r in results} - {None}
    return tuple(range(1, max(ks or {datasets.get(dataset).folds}) + 1))


def refused(row: dict) -> Optional[str]:
    """Why a row has no means (its folds were made by different configs, or a run has two
    results), or None: the aggregator's verdict, which the report shows and draws as it is."""
    return "\n".join(row[k] for k in ("mixed", "duplicate") if row.get(k)) or None


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
    exclude = [Path(f) for f in exclude]
    found: dict = {}
    corrupt: dict = {}
    duplicates: dict = {}  # (dataset, res, fold, seed) -> every result file of that run (lenient mode)
    problems: list = []

    def problem(message: str) -> None:
        if strict:
            raise AggregateError(message)
        problems.append(message)

    for path in sorted(root.rglob("result.json")):
        if _under(path, exclude):
            continue
        try:
            r = read_result(path)
        except AggregateError as e:
            key = None if strict else _run_key(path.parent)
            if key is None:
                problem(str(e))
            else:
                corrupt[key] = (path.parent, str(e))
            continue
        key = (str(r["dataset"]), str(r["resolution"]), int(r["fold"]), seed_of(r))
        if key in found or key in duplicates:
            first = found[key][0] if key in found else duplicates[key][0]
            problem(f"two results for {key[0]} res {key[1]} fold {key[2]} seed {key[3]}: {first} and {path}")
            duplicates.setdefault(key, [first]).append(path)
            found.pop(key, None)  # neither is the run's result: which one is, only a person can say
            continue
        found[key] = (path, r)
    failed = _failed_runs(root, exclude)
    table: dict = {}
    groups = {k[:2] for k in list(found) + list(failed) + list(corrupt) + list(duplicates)}
    groups |= {(d, res) for d in {g[0] for g in groups} for res in (resolutions or [])}
    for dataset, res in sorted(groups, key=lambda g: (g[0], int(g[1]))):
        row_folds = folds or protocol_folds(dataset, [v for k, v in found.items() if k[:2] == (dataset, res)])

        def cell(runs: dict) -> dict:  # (fold, seed) -> value, this row's folds only
            return {k[2:]: v for k, v in runs.items() if k[:2] == (dataset, res) and k[2] in row_folds}

        present, row_failed, row_corrupt, row_dups = cell(found), cell(failed), cell(corrupt), cell(duplicates)
        row_seeds = sorted({s for _, s in [*present, *row_failed, *row_corrupt, *row_dups]} | set(seeds or []))
        key = lambda f, s: run_key(f, s, len(row_seeds) > 1)  # noqa: E731
        row: dict = {"folds": {}}
        for f in row_folds:
            runs = [(path, r) for (fold, _), (path, r) in sorted(present.items()) if fold == f]
            if runs:
                row["folds"][str(f)] = {**{k: _mean_of([r.get(k) for _, r in runs]) for k in METRICS},
                                        "file": str(runs[0][0]), "config_fingerprint": runs[0][1]["config_fingerprint"]}
        row["expected"] = list(row_folds)
        row["duplicates"] = {key(*fs): [str(p) for p in paths] for fs, paths in sorted(row_dups.items())}
        row["duplicate"] = (f"{dataset} res {res}: "
                            + "; ".join(f"fold {k} has {len(paths)} results ({', '.join(paths)})"
                                        for k, paths in row["duplicates"].items())
                            + ": not averaged (keep one run per fold; move the others out of the runs root)"
                            if row["duplicates"] else None)
        row["missing"] = [f for f in row_folds if str(f) not in row["folds"] and all(fs[0] != f for fs in row_dups)]
        row["failed"] = {key(*fs): str(folder) for fs, folder in sorted(row_failed.items())}
        row["corrupt"] = {key(*fs): why for fs, (_, why) in sorted(row_corrupt.items())}
        row["failed"].update({key(*fs): str(folder) for fs, (folder, _) in sorted(row_corrupt.items())})
        expected = [(f, s) for f in row_folds for s in (seeds or row_seeds or [1])]
        row["complete"] = not row["missing"] and not row_dups and all(fs in present for fs in expected)
        mixed = mixed_configs(f"{dataset} res {res}", {key(*fs): v for fs, v in present.items()})
        if mixed:
            problem(mixed)
        row["mixed"] = mixed
        row["config_fingerprint"] = (group_fingerprint(next(iter(present.values()))[1]["run_identity"])
                                     if present and not mixed else None)
        for m in METRICS:
            vals = [v[m] for v in row["folds"].values() if v[m] is not None]
            row[f"{m}_mean"], row[f"{m}_std"] = _stats([] if refused(row) else vals)
        paper = datasets.paper(dataset, res)
        row["paper"] = dict(zip(METRICS, paper)) if paper else None
        row["seeds"] = row_seeds  # found (done, failed) or expected
        for why in add_uncertainty(row, {key(*fs): (fs, path, r) for fs, (path, r) in present.items()},
                                   [(f, s) for f, s in expected if (f, s) not in present and (f, s) not in row_dups], key, level, resamples,
                                   ci_seed):
            problem(f"{dataset} res {res}: {why}")
        table.setdefault(dataset, {})[res] = row
    return table, problems


def run_key(fold: int, seed: int, several_seeds: bool) -> str:
    """How a row names one run: its fold ("3"), or with several seeds in the row "3/seed2"."""
    return f"{fold}/seed{seed}" if several_seeds else str(fold)


def _mean_of(values: list) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


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
    by_fold: dict = {}
    for (f, s), _, r in runs.values():
        by_fold.setdefault(f, []).append(r)
    for m in METRICS:
        per_seed = {}
        for (f, s), _, r in runs.values():
            if r.get(m) is not None:
                per_seed.setdefault(s, []).append(r[m])
        means = [statistics.fmean(v) for v in per_seed.values()]
        row[f"{m}_seed_std"] = statistics.stdev(means) if len(means) > 1 and not refused(row) else None
    problems = []
    for suffix in ("", "_2clip"):
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
    row["verdict"] = {m: stats.verdict(row["paper"][m], row[f"{m}_ci"]) for m in METRICS} if row["paper"] else None
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


def collect(root: str | Path, folds=None, resolutions: Optional[list[str]] = None, exclude=(), **uncertainty) -> dict:
    """:func:`collect_all` in strict mode: the table, or an AggregateError for the first problem;
    ``uncertainty``: its seeds, level, resamples and ci_seed."""
    return collect_all(root, folds, resolutions, exclude, strict=True, **uncertainty)[0]


def _cell(mean, std, complete: bool, n: int, total: int) -> str:
    if mean is None:
        return "-"
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")
    return text if complete else f"{text} (incomplete: {n}/{total} folds)"


def title(dataset: str) -> str:
    """A dataset's name as the tables print it (DFEW, CREMA-D, ...)."""
    return datasets.REGISTRY[dataset].title if dataset in datasets.REGISTRY else dataset.upper()


def markdown(table: dict, expected=None) -> str:
    """The tables; ``expected`` as ``folds`` for :func:`collect_all` (None: each row's expected folds)."""
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


def plot(table: dict, folder: str | Path) -> list[Path]:
    """One PNG per dataset: UAR and WAR means per resolution (bars, with ±std whiskers) and the
    paper's numbers (black ticks); a row with folds missing in a paler shade of its colour (and
    "incomplete" under it), a row the aggregator refuses to average without a bar. Drawn with
    Pillow; the axis runs to 110 so that a whisker above 100 is drawn whole; returns the files."""
    from PIL import Image, ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    colours = {"uar": ((66, 133, 244), (179, 204, 250)), "war": ((52, 168, 83), (174, 220, 186))}
    written = []
    for dataset, rows in table.items():
        heading = f"{title(dataset)}: UAR (blue) / WAR (green), mean ± std over folds; paper: black"
        legend = "pale: folds missing (incomplete)"
        left, top, bottom, group = 40, 44, 44, 140
        text_width = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(heading)
        w, h = max(left + 20 + group * len(rows), left + int(text_width) + 20), 380
        img = Image.new("RGB", (w, h), "white")
        d = ImageDraw.Draw(img)
        y = lambda v: h - bottom - (h - bottom - top) * min(max(v, 0.0), 110.0) / 110.0  # noqa: E731
        for tick in range(0, 101, 20):
            d.line([(left, y(tick)), (w - 10, y(tick))], fill=(225, 225, 225))
            d.text((8, y(tick) - 6), str(tick), fill="black")
        for i, (res, row) in enumerate(rows.items()):
            x0, bar = left + 20 + group * i, 40
            for j, metric in enumerate(("uar", "war")):
                mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
                bx = x0 + j * (bar + 8)
                if mean is not None:
                    d.rectangle([bx, y(mean), bx + bar, y(0)], fill=colours[metric][0 if row["complete"] else 1])
                    if std is not None:
                        d.line([(bx + bar / 2, y(mean - std)), (bx + bar / 2, y(mean + std))], fill="black", width=2)
                if row["paper"]:
                    d.line([(bx - 3, y(row["paper"][metric])), (bx + bar + 3, y(row["paper"][metric]))], fill="black",
                           width=3)
            label = f"{res} px" + ("" if row["complete"] else " (incomplete)")
            d.text((x0, h - bottom + 8), label, fill="black")
            if refused(row):
                d.text((x0, h - bottom + 22), "not averaged", fill=(180, 35, 24))
        d.text((left, 6), heading, fill="black")
        d.text((left, 22), legend, fill=(90, 90, 90))
        path = folder / f"{dataset}.png"
        img.save(path)
        written.append(path)
    return written


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
