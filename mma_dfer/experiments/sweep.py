"""Sweeps: the paper's experiments (Table 1's grid, the ablations of Tables 2-7) as YAML files.

A sweep file names its variants (each a set of config overrides on top of the base config),
the datasets, folds and resolutions they run on, and, for the report, the paper's layout
(``columns`` and each variant's ``row``) and numbers (``paper``). Expanded, it is a list of
:class:`SweepRun`, one per variant x dataset x resolution x fold, each with its run folder
``<runs_root>/<sweep>/<variant>/<dataset>/res<R>/fold<k>/`` (``.../fold<k>/seed<s>/`` when the sweep
runs several training ``seeds``). ``launch/submit.py --sweep`` and
``slurm/sweep.sh`` both fan out that list; ``launch/report.py`` reads the definition that the
launchers copy next to the runs (``<runs_root>/<sweep>/sweep.yaml``).

    python -m mma_dfer.experiments.sweep task SWEEP INDEX [--runs-root R] [--folds ..] ...  (slurm/sweep.sh)
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from mma_dfer.config import ConfigError, load_config, parse_override
from mma_dfer.datasets import NAMES
from mma_dfer.resources import ResourceError, paper_config, sweep_path
from mma_dfer.utils import atomic_write_text, parse_int_list

DEFINITION = "sweep.yaml"  # the copy of the definition in <runs_root>/<sweep>/
LAYOUTS = ("ablation", "table1")
# the default config template: the shipped <dataset>_<resolution>, else paper (resources.paper_config)
PAPER_CONFIGS = "{dataset}_{resolution}"
KEYS = {"name", "title", "layout", "datasets", "folds", "resolutions", "config", "set", "columns", "variants", "note",
        "seeds", "reference"}
VARIANT_KEYS = {"set", "row", "paper", "note"}
PAPER_KEYS = {"uar", "war", "params"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SweepError(ValueError):
    """A sweep file is malformed or one of its variants does not make a valid config; names both."""


@dataclass
class Variant:
    name: str
    overrides: dict  # dotted config key -> value
    row: list = field(default_factory=list)  # the paper's row labels (one per sweep column)
    paper: Optional[dict] = None  # the paper's numbers: uar, war (percent), params (M)
    note: str = ""

    def override_args(self) -> list[str]:
        return [f"{k}={_yaml_value(v)}" for k, v in self.overrides.items()]


@dataclass
class Sweep:
    name: str
    path: str
    title: str
    layout: str
    datasets: list
    folds: list
    resolutions: list
    config: str  # template: {dataset}, {resolution}
    overrides: dict  # applied to every variant, before the variant's own
    columns: list
    variants: list
    note: str = ""
    seeds: Optional[list] = None  # training seeds (train.seed); None: the config's, one run per fold
    reference: Optional[str] = None  # the variant the others' paired differences are taken against

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise SweepError(f"{self.path}: no variant {name!r} (variants: {[v.name for v in self.variants]})")

    def to_dict(self) -> dict:
        """The definition as YAML data (what :func:`load_sweep` reads back)."""
        return {"name": self.name, "title": self.title, "layout": self.layout, "datasets": self.datasets,
                "folds": self.folds, "resolutions": self.resolutions, "config": self.config,
                "set": self.overrides, "columns": self.columns, "note": self.note, "seeds": self.seeds,
                "reference": self.reference,
                "variants": {v.name: {"set": v.overrides, "row": v.row, "paper": v.paper, "note": v.note}
                             for v in self.variants}}


@dataclass
class SweepRun:
    """One training run of a sweep."""

    sweep: str
    variant: str
    dataset: str
    resolution: int
    fold: int
    config: str
    sets: list  # key=value: the sweep's, the variant's, then the command line's
    output_dir: str
    seed: Optional[int] = None  # train.seed when the sweep has seeds (the run folder then ends in seed<s>/)

    @property
    def overrides(self) -> list:
        """Everything the run's config gets on top of its YAML (output_dir apart)."""
        return [f"data.dataset={self.dataset}", f"data.fold={self.fold}", f"data.resolution={self.resolution}",
                *([f"train.seed={self.seed}"] if self.seed is not None else []), *self.sets]


def _yaml_value(v) -> str:
    """A value as the right-hand side of ``--set key=value`` (parsed back as YAML)."""
    if isinstance(v, str) and yaml.safe_load(v) == v and " " not in v:
        return v
    return json.dumps(v)


def _int_list(path, key, value) -> list:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        try:
            value = parse_int_list(value)
        except ValueError:
            raise SweepError(f"{path}: {key}={value!r} is not a list of integers") from None
    if not isinstance(value, list) or not value or not all(isinstance(x, int) and not isinstance(x, bool)
                                                           for x in value):
        raise SweepError(f"{path}: {key} must be a non-empty list of integers, got {value!r}")
    return value


def _overrides(path, where, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and "." in k for k in value):
        raise SweepError(f"{path}: {where} must map dotted config keys (section.key) to values, got {value!r}")
    return dict(value)


def _unknown(path, where, data: dict, allowed: set) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise SweepError(f"{path}: unknown key(s) {extra} in {where} (allowed: {sorted(allowed)})")


def _variant(path, name, data, columns) -> Variant:
    if not isinstance(name, str) or not NAME.match(name):
        raise SweepError(f"{path}: variant name {name!r} must be a folder name (letters, digits, _ . -)")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SweepError(f"{path}: variant {name!r} must be a mapping (set, row, paper, note)")
    _unknown(path, f"variant {name!r}", data, VARIANT_KEYS)
    row = [str(x) for x in (data.get("row") or [])]
    if row and len(row) != len(columns):
        raise SweepError(f"{path}: variant {name!r} has {len(row)} row labels for {len(columns)} columns {columns}")
    paper = data.get("paper")
    if paper is not None:
        if not isinstance(paper, dict) or not {"uar", "war"} <= set(paper):
            raise SweepError(f"{path}: variant {name!r}: paper must give uar and war (and optionally params)")
        _unknown(path, f"variant {name!r} paper", paper, PAPER_KEYS)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in paper.values()):
            raise SweepError(f"{path}: variant {name!r}: paper values must be numbers, got {paper}")
    return Variant(name, _overrides(path, f"variant {name!r} set", data.get("set")), row, paper,
                   str(data.get("note") or ""))


def parse_sweep(data, path: str, default_name: str) -> Sweep:
    """A :class:`Sweep` from YAML data; every problem is a :class:`SweepError` naming ``path``."""
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file is a mapping (title, datasets, folds, resolutions, variants, ...)")
    _unknown(path, "the sweep", data, KEYS)
    name = str(data.get("name") or default_name)
    if not NAME.match(name):
        raise SweepError(f"{path}: sweep name {name!r} must be a folder name (letters, digits, _ . -)")
    layout = data.get("layout", "ablation")
    if layout not in LAYOUTS:
        raise SweepError(f"{path}: layout={layout!r} is not one of {list(LAYOUTS)}")
    datasets = data.get("datasets", ["dfew"])
    datasets = [datasets] if isinstance(datasets, str) else datasets
    if not isinstance(datasets, list) or not datasets or any(d not in NAMES for d in datasets):
        raise SweepError(f"{path}: datasets={datasets!r} must be a list of {'/'.join(NAMES)}")
    columns = [str(c) for c in (data.get("columns") or [])]
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise SweepError(f"{path}: variants must be a non-empty mapping name -> {{set, row, paper}}")
    reference = data.get("reference")
    if reference is not None and reference not in variants:
        raise SweepError(f"{path}: reference={reference!r} is not one of the variants {list(variants)}")
    seeds = data.get("seeds")
    return Sweep(
        name=name, path=str(path), title=str(data.get("title") or name), layout=layout, datasets=datasets,
        folds=_int_list(path, "folds", data.get("folds", [1])),
        resolutions=_int_list(path, "resolutions", data.get("resolutions", [160])),
        config=str(data.get("config") or PAPER_CONFIGS),
        overrides=_overrides(path, "set", data.get("set")), columns=columns,
        variants=[_variant(path, k, v, columns) for k, v in variants.items()], note=str(data.get("note") or ""),
        seeds=None if seeds is None else _int_list(path, "seeds", seeds), reference=reference)


def load_sweep(path: str | Path) -> Sweep:
    """A sweep file, or a shipped sweep's name (``table4``: :mod:`mma_dfer.resources`)."""
    try:
        path = sweep_path(path)
    except ResourceError as e:
        raise SweepError(str(e)) from None
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SweepError(f"cannot read sweep file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({e})") from None
    stem = path.parent.name if path.name == DEFINITION else path.stem
    return parse_sweep(data, str(path), stem)


def restrict(sweep: Sweep, folds=None, resolutions=None, datasets=None, seeds=None) -> Sweep:
    """The sweep on another grid (e.g. the tiny CPU check, or more seeds)."""
    return Sweep(**{**sweep.__dict__, "folds": list(folds or sweep.folds),
                    "resolutions": list(resolutions or sweep.resolutions),
                    "datasets": list(datasets or sweep.datasets), "seeds": list(seeds) if seeds else sweep.seeds})


def reference_variant(sweep: Sweep) -> Variant:
    """The row the others are compared with: the file's ``reference``, else the first variant
    that changes nothing (the paper's own model, "ours"), else the first."""
    if sweep.reference:
        return sweep.variant(sweep.reference)
    return next((v for v in sweep.variants if not v.overrides), sweep.variants[0])


def seed_folder(out: Path, seed: Optional[int]) -> Path:
    """A run folder of one seed: ``<...>/fold<k>/seed<s>/`` when seeds are a sweep axis."""
    return out if seed is None else out / f"seed{seed}"


def expand(sweep: Sweep, runs_root: str | Path, config: Optional[str] = None, extra: Optional[list] = None,
           variants: Optional[list] = None) -> list[SweepRun]:
    """Every run of the sweep, each config checked (a variant that makes an invalid config is an
    error naming the sweep file and the variant). ``config`` replaces the sweep's config template,
    ``extra`` are ``key=value`` overrides applied last (e.g. data.root); one that would change a
    key a variant sets is an error, so a command line cannot silently undo an ablation.
    ``variants`` picks a subset; the others stay in the definition, and so in the report, as
    missing runs. With ``sweep.seeds`` each run is repeated per seed (innermost), into
    ``.../fold<k>/seed<s>/`` with ``train.seed=<s>``."""
    for name in variants or []:
        sweep.variant(name)  # an unknown name is an error
    extra = list(extra or [])
    extra_keys = {k.split("=", 1)[0].strip() for k in extra}
    runs = []
    for v in sweep.variants:
        if variants and v.name not in variants:
            continue
        clash = sorted(extra_keys & (set(v.overrides) | set(sweep.overrides)
                                     | ({"train.seed"} if sweep.seeds else set())))
        if clash:
            raise SweepError(f"{sweep.path}: --set {clash} would override what variant {v.name!r} sets")
        for dataset in sweep.datasets:
            for res in sweep.resolutions:
                template = config or sweep.config
                cfg_path = (paper_config(dataset, res) if template == PAPER_CONFIGS
                            else template.format(dataset=dataset, resolution=res))
                for fold, seed in [(f, s) for f in sweep.folds for s in (sweep.seeds or [None])]:
                    sets = [*[f"{k}={_yaml_value(x)}" for k, x in sweep.overrides.items()], *v.override_args(), *extra]
                    out = Path(runs_root) / sweep.name / v.name / dataset / f"res{res}" / f"fold{fold}"
                    out = seed_folder(out, seed)
                    run = SweepRun(sweep.name, v.name, dataset, res, fold, cfg_path, sets, str(out), seed)
                    try:
                        for item in run.overrides:
                            parse_override(item)
                        load_config(cfg_path, run.overrides)
                    except (ConfigError, yaml.YAMLError) as e:
                        raise SweepError(f"{sweep.path}: variant {v.name!r} ({dataset} res {res} fold {fold}, "
                                         f"config {cfg_path}): {e}") from None
                    runs.append(run)
    return runs


def write_definition(sweep: Sweep, runs_root: str | Path) -> Path:
    """Copy the definition next to its runs for the report; the grid is the union with a copy
    already there (two submissions on different folds expect both)."""
    path = Path(runs_root) / sweep.name / DEFINITION
    data = sweep.to_dict()
    if path.is_file():
        try:
            old = load_sweep(path)
        except SweepError:
            old = None
        if old is not None:
            for key in ("datasets", "folds", "resolutions", "seeds"):
                if data[key] is not None or getattr(old, key) is not None:
                    data[key] = sorted(set(data[key] or []) | set(getattr(old, key) or []))
    atomic_write_text(path, f"# written by the sweep launcher from {sweep.path}\n"
                            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


# -- slurm/sweep.sh: one array task -> shell variables ----------------------------------

def task_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mma_dfer.experiments.sweep task",
                                description="Print the shell variables of one task of a sweep (slurm/sweep.sh).")
    p.add_argument("sweep")
    p.add_argument("index", type=int)
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--config", default="", help="one YAML for every run (default: the sweep's)")
    p.add_argument("--folds", default="")
    p.add_argument("--resolutions", default="")
    p.add_argument("--variants", default="", help="comma-separated subset of the variants")
    p.add_argument("--seeds", default="", help="training seeds, e.g. 1,2,3 (replace the sweep's)")
    p.add_argument("--sets", default="", help="extra overrides, space-separated key=value")
    p.add_argument("--write-definition", action="store_true", help="also copy the definition next to the runs")
    args = p.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep)
        names = [n for n in args.variants.replace(",", " ").split() if n]
        sweep = restrict(sweep, *[parse_int_list(x) if x else None for x in (args.folds, args.resolutions)],
                         seeds=parse_int_list(args.seeds) if args.seeds else None)
        runs = expand(sweep, args.runs_root, args.config or None, args.sets.split(), names)
        if args.write_definition:
            write_definition(sweep, args.runs_root)
    except ValueError as e:  # a SweepError, or a grid flag that is no list of integers
        print(f"error: {e}", file=sys.stderr)
        return 2
    fields = {"SWEEP_NAME": sweep.name, "TOTAL": len(runs)}
    if 0 <= args.index < len(runs):
        r = runs[args.index]  # all_folds.sh sets data.dataset/fold/resolution from DATASET/FOLDS/RESOLUTIONS
        fields.update(VARIANT=r.variant, DATASET=r.dataset, FOLD=r.fold, RES=r.resolution, RUN_CONFIG=r.config,
                      VARIANT_ROOT=str(Path(r.output_dir).parents[2 if r.seed is None else 3]),
                      RUN_SETS=" ".join(r.sets), SEED="" if r.seed is None else r.seed)
    for k, v in fields.items():
        print(f"{k}={shlex.quote(str(v))}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "task":
        raise SystemExit(task_main(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    raise SystemExit(2)
