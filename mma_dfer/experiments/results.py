"""Finding and reading the runs under a runs root: every ``result.json`` checked field by field,
the run folders that have no result (failed), and two results for one run (duplicates).

A run is keyed (dataset, resolution, fold, seed). The aggregator reads nothing else: a result
whose fields the tables use are not well-formed is corrupt, and a fold with two results has
none that counts (which one is the run's, only a person can say).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from mma_dfer import datasets

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
    why = _malformed(data)
    if why:
        raise AggregateError(f"{path}: corrupt result file ({why})")
    fp, identity = data.get("config_fingerprint"), data.get("run_identity")
    if fp is None or identity is None:
        raise AggregateError(f"{path}: no run identity (config_fingerprint, run_identity): written before run "
                             "identities or by hand, so it cannot be checked against the other folds")
    if not isinstance(fp, str) or not HEX.match(fp) or not isinstance(identity, dict):
        raise AggregateError(f"{path}: corrupt result file (config_fingerprint or run_identity malformed)")
    return data


def _malformed(data: dict) -> Optional[str]:
    """The first field of a result (with every REQUIRED key) that the tables cannot use, or None."""
    for k in METRICS:
        v = data.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{k}={v!r} is not a number"
    if data["dataset"] not in datasets.NAMES:
        return f"dataset={data['dataset']!r} is not one of {list(datasets.NAMES)}"
    k = data.get("folds", datasets.get(data["dataset"]).folds)
    if not _is_int(k) or k < 1:
        return f"folds={k!r} is not a number of folds"
    if not _is_int(data["fold"]) or not 1 <= data["fold"] <= k:
        return f"fold={data['fold']!r} is not a fold 1-{k}"
    if not _is_int(data["resolution"]) or data["resolution"] <= 0:
        return f"resolution={data['resolution']!r} is not a size"
    if not _is_int(data.get("seed", 1)):
        return f"seed={data['seed']!r} is not an integer"
    for key in ("predictions", "predictions_2clip"):
        if data.get(key) is not None and not _predictions_ok(data[key]):
            return (f"{key} is not three equally long integer lists index, label, pred in dataset-index "
                    "order")
    return None


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


def folder_key(folder: Path) -> Optional[tuple]:
    """(dataset, res, fold, seed) of a run folder, read off its saved ``config.yaml``; None if unreadable."""
    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        data = cfg.get("data", {})
        return str(data["dataset"]), str(int(data["resolution"])), int(data["fold"]), int(
            (cfg.get("train") or {}).get("seed", 1))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None


def failed_runs(root: Path, exclude=()) -> dict:
    """Run folders (a saved config.yaml) without a result: (dataset, res, fold, seed) -> folder."""
    out = {}
    for cfg_path in root.rglob("config.yaml"):
        if (cfg_path.parent / "result.json").exists() or _under(cfg_path, exclude):
            continue
        key = folder_key(cfg_path.parent)
        if key is not None:
            out[key] = cfg_path.parent
    return out


@dataclass
class Found:
    """The runs of a runs root (or of one row: :meth:`row`), by run key."""

    results: dict = field(default_factory=dict)  # key -> (path, result)
    corrupt: dict = field(default_factory=dict)  # key -> (folder, why): lenient mode only
    duplicates: dict = field(default_factory=dict)  # key -> every result file of that run: none counts
    failed: dict = field(default_factory=dict)  # key -> run folder without a result

    def parts(self) -> tuple:
        """Every kind of run found: done, failed, corrupt, duplicated."""
        return self.results, self.failed, self.corrupt, self.duplicates

    def cells(self) -> set:
        """The (dataset, res) of every run found, whatever became of it."""
        return {k[:2] for part in self.parts() for k in part}

    def row(self, dataset: str, res: str, folds) -> "Found":
        """One row's runs among ``folds``, keyed (fold, seed)."""
        def cell(runs: dict) -> dict:
            return {k[2:]: v for k, v in runs.items() if k[:2] == (dataset, res) and k[2] in folds}
        return Found(cell(self.results), cell(self.corrupt), cell(self.duplicates), cell(self.failed))


def find_runs(root: Path, exclude: list, strict: bool, problem: Callable[[str], None]) -> Found:
    """Every run under ``root`` (those under ``exclude`` apart). A corrupt result is ``problem``
    (which raises in strict mode), or in lenient mode its run's failure when its folder names
    the run; two results for one run are ``problem`` and neither is counted."""
    found = Found()
    for path in sorted(root.rglob("result.json")):
        if _under(path, exclude):
            continue
        try:
            r = read_result(path)
        except AggregateError as e:
            key = None if strict else folder_key(path.parent)
            if key is None:
                problem(str(e))
            else:
                found.corrupt[key] = (path.parent, str(e))
            continue
        key = (str(r["dataset"]), str(r["resolution"]), int(r["fold"]), seed_of(r))
        if key in found.results or key in found.duplicates:
            first = found.results[key][0] if key in found.results else found.duplicates[key][0]
            problem(f"two results for {key[0]} res {key[1]} fold {key[2]} seed {key[3]}: {first} and {path}")
            found.duplicates.setdefault(key, [first]).append(path)
            found.results.pop(key, None)  # neither is the run's result: which one is, only a person can say
            continue
        found.results[key] = (path, r)
    found.failed = failed_runs(root, exclude)
    return found
