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

from mma_dfer import datasets
from mma_dfer.runs.identity import PER_FOLD, differences, group_fingerprint
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
    fp, identity = data.get("config_fingerprint"), data.get("run_identity")
    if fp is None or identity is None:
        raise AggregateError(f"{path}: no run identity (config_fingerprint, run_identity): written before run "
                             "identities or by hand, so it cannot be checked against the other folds")
    if not isinstance(fp, str) or not HEX.match(fp) or not isinstance(identity, dict):
        raise AggregateError(f"{path}: corrupt result file (config_fingerprint or run_identity malformed)")
    return data


def _under(path: Path, folders) -> bool:
    return any(path.is_relative_to(f) for f in folders)


def _run_key(folder: Path) -> Optional[tuple]:
    """(dataset, res, fold) of a run folder, read off its saved ``config.yaml``; None if unreadable."""
    import yaml

    try:
        data = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("data", {})
        return str(data["dataset"]), str(int(data["resolution"])), int(data["fold"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None


def _failed_runs(root: Path, exclude=()) -> dict:
    """Run folders (a saved config.yaml) without a result: (dataset, res, fold) -> folder."""
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
    """Why the folds ``results`` ({fold: (path, result)}) of one row must not be averaged (they
    were made by different configs: which folds, which fields), or None."""
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
                                                  f"in fold {fold}", skip=PER_FOLD)]
    return "\n".join(lines)


def protocol_folds(dataset: str, results) -> tuple:
    """The folds 1..K of a row: K as its results record it (``folds``), else the registry's."""
    ks = {r.get("folds") for _, r in results} - {None}
    return tuple(range(1, max(ks or {datasets.get(dataset).folds}) + 1))


def refused(row: dict) -> Optional[str]:
    """Why a row has no means (its folds were made by different configs, or a fold has two
    results), or None: the aggregator's verdict, which the report shows and draws as it is."""
    return "\n".join(row[k] for k in ("mixed", "duplicate") if row.get(k)) or None


def collect_all(root: str | Path, folds=None, resolutions: Optional[list[str]] = None, exclude=(),
                strict: bool = True) -> tuple[dict, list]:
    """The aggregate JSON (``{dataset: {resolution: {"folds": {fold: {...}}, "uar_mean", ...}}}``)
    and the problems that are not in it. ``folds``: the folds every row expects (None: each
    dataset's protocol, :func:`protocol_folds`; the row's ``expected``). Runs under the ``exclude`` folders are left out (the
    report: sweeps apart from loose runs). ``strict``: the first problem is an AggregateError;
    otherwise a corrupt result is its fold's failure (``row["corrupt"]``, or a problem when its
    folder names no fold), and a row of mixed configs or with two results for one fold has no
    means and says why (``row["mixed"]``, ``row["duplicate"]``; both are problems too); the
    duplicated fold's files are ``row["duplicates"]``, none of them counted."""
    root = Path(root)
    if not root.is_dir():
        raise AggregateError(f"runs root {root} does not exist")
    exclude = [Path(f) for f in exclude]
    found: dict = {}
    corrupt: dict = {}
    duplicates: dict = {}  # (dataset, res, fold) -> every result file of that fold (lenient mode)
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
        key = (str(r["dataset"]), str(r["resolution"]), int(r["fold"]))
        if key in found or key in duplicates:
            first = found[key][0] if key in found else duplicates[key][0]
            problem(f"two results for {key[0]} res {key[1]} fold {key[2]}: {first} and {path}")
            duplicates.setdefault(key, [first]).append(path)
            found.pop(key, None)  # neither is the fold's result: which one is, only a person can say
            continue
        found[key] = (path, r)
    failed = _failed_runs(root, exclude)
    table: dict = {}
    groups = {(d, res) for d, res, _ in list(found) + list(failed) + list(corrupt) + list(duplicates)}
    groups |= {(d, res) for d in {g[0] for g in groups} for res in (resolutions or [])}
    for dataset, res in sorted(groups, key=lambda g: (g[0], int(g[1]))):
        expected = folds or protocol_folds(dataset, [v for (d, r, _), v in found.items() if (d, r) == (dataset, res)])
        present = {f: found[(dataset, res, f)] for f in expected if (dataset, res, f) in found}
        row: dict = {"folds": {str(f): {**{k: r.get(k) for k in METRICS}, "file": str(path),
                                        "config_fingerprint": r["config_fingerprint"]}
                               for f, (path, r) in present.items()}}
        row["expected"] = list(expected)
        row["duplicates"] = {str(f): [str(p) for p in duplicates[(dataset, res, f)]] for f in expected
                             if (dataset, res, f) in duplicates}
        row["duplicate"] = (f"{dataset} res {res}: "
                            + "; ".join(f"fold {f} has {len(paths)} results ({', '.join(paths)})"
                                        for f, paths in row["duplicates"].items())
                            + ": not averaged (keep one run per fold; move the others out of the runs root)"
                            if row["duplicates"] else None)
        row["missing"] = [f for f in expected if str(f) not in row["folds"] and str(f) not in row["duplicates"]]
        row["failed"] = {str(f): str(failed[(dataset, res, f)]) for f in expected if (dataset, res, f) in failed}
        row["corrupt"] = {str(f): corrupt[(dataset, res, f)][1] for f in expected if (dataset, res, f) in corrupt}
        row["failed"].update({str(f): str(corrupt[(dataset, res, f)][0]) for f in expected
                              if (dataset, res, f) in corrupt})
        row["complete"] = not row["missing"] and not row["duplicates"]
        mixed = mixed_configs(f"{dataset} res {res}", present)
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
        table.setdefault(dataset, {})[res] = row
    return table, problems


def collect(root: str | Path, folds=None, resolutions: Optional[list[str]] = None, exclude=()) -> dict:
    """:func:`collect_all` in strict mode: the table, or an AggregateError for the first problem."""
    return collect_all(root, folds, resolutions, exclude, strict=True)[0]


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
                             ("failed" if str(f) in row["failed"] else "missing"))
            n = len(row["folds"])
            stats = [_cell(row[f"{m}_mean"], row[f"{m}_std"], row["complete"], n, len(folds)) for m in METRICS]
            p = row["paper"]
            paper = [f"{p['uar']:.2f}/{p['war']:.2f}", f"{p['uar_2clip']:.2f}/{p['war_2clip']:.2f}"] if p else ["-", "-"]
            lines.append(f"| {res} | " + " | ".join(cells + stats + paper) + " |")
        for res, row in rows.items():
            if row["missing"]:
                lines.append(f"\n{title(dataset)} {res}: missing folds {row['missing']}"
                             + (f"; failed runs: {row['failed']}" if row["failed"] else ""))
        lines.append("")
    lines.append("mean ± sample std (n-1) over folds; * = 2-clip average; paper = MMA-DFER Table 1")
    return "\n".join(lines)


def to_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "resolution", "fold", *METRICS])
    for dataset, rows in table.items():
        for res, row in rows.items():
            for fold, r in row["folds"].items():
                w.writerow([dataset, res, fold, *[r[m] for m in METRICS]])
            w.writerow([dataset, res, "mean", *[row[f"{m}_mean"] for m in METRICS]])
            w.writerow([dataset, res, "std", *[row[f"{m}_std"] for m in METRICS]])
            if row["paper"]:
                w.writerow([dataset, res, "paper", *[row["paper"][m] for m in METRICS]])
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


def run(args) -> int:
    folds = tuple(parse_int_list(args.folds)) if args.folds else None
    try:
        table = collect(args.runs_root, folds, [r for r in args.resolutions.split(",") if r])
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
