"""A dataset given as a CSV manifest (``data.dataset: manifest``, ``data.manifest: FILE``).

Columns (a header row names them): ``path`` (a video file or a face-frame folder, relative to
``data.root`` or, without one, to the manifest's folder), ``label`` (a class name, or an index
into ``data.class_names``), and optionally ``fold`` (the clip is in the test part of that fold,
folds 1..K) or ``split`` (``train``/``test``: one given split, K = 1), and ``group`` (the
speaker: generated folds keep a group on one side). Without ``fold`` and ``split`` the folds are
generated (:mod:`mma_dfer.datasets.folds`). No torch here: config validation reads it.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mma_dfer.datasets.errors import DatasetError

REQUIRED = ("path", "label")
OPTIONAL = ("fold", "split", "group")


@dataclass(frozen=True)
class Row:
    line: int
    path: str
    label: str
    fold: Optional[int]
    split: Optional[str]
    group: Optional[str]

    @property
    def clip_id(self) -> str:
        """The clip's name in split digests, caches and outputs: its path without the suffix."""
        p = Path(self.path)
        return (p.parent / p.stem).as_posix() if p.suffix else p.as_posix().rstrip("/")


@dataclass(frozen=True)
class Manifest:
    path: Path
    rows: tuple
    columns: tuple
    digest: str  # sha256 of the file's bytes (names its generated folds)

    def label_names(self) -> list[str]:
        """The class names the file implies: its label names, sorted (integer labels need data.class_names)."""
        labels = sorted({r.label for r in self.rows})
        if all(_is_int(x) for x in labels):
            raise DatasetError(f"{self.path}: the labels are numbers; name the classes with data.class_names")
        return labels

    def given_folds(self) -> Optional[int]:
        """K when the file defines the folds (a fold column: its largest fold; a split column: 1), else None."""
        if "fold" in self.columns:
            return max(r.fold for r in self.rows)
        if "split" in self.columns:
            return 1
        return None

    def label_index(self, row: Row, names: list[str]) -> int:
        """The row's label as an index into ``names``; a named error for a label outside them."""
        if row.label in names:
            return names.index(row.label)
        if _is_int(row.label) and 0 <= int(row.label) < len(names):
            return int(row.label)
        raise DatasetError(f"{self.path}:{row.line}: label {row.label!r} is not one of the classes {names}")


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


_CACHE: dict = {}


def read_manifest(path) -> Manifest:
    """The manifest at ``path``, checked (columns, empty fields, folds); read once per content."""
    if not path:
        raise DatasetError("data.dataset=manifest needs data.manifest (the CSV's path)")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"data.manifest={path}: cannot read it ({e.strerror or e})") from None
    key = (str(path.resolve()), hashlib.sha256(data).hexdigest())
    if key not in _CACHE:
        _CACHE[key] = _parse(path, data.decode("utf-8-sig", errors="replace"), key[1])
    return _CACHE[key]


def _parse(path: Path, text: str, digest: str) -> Manifest:
    reader = csv.DictReader(text.splitlines())
    columns = tuple((c or "").strip() for c in reader.fieldnames or ())
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DatasetError(f"{path}: the header must name the columns {list(REQUIRED)} (optional {list(OPTIONAL)}); "
                           f"missing {missing}, got {list(columns)}")
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise DatasetError(f"{path}: unknown column(s) {unknown}; expected {list(REQUIRED + OPTIONAL)}")
    if "fold" in columns and "split" in columns:
        raise DatasetError(f"{path}: give either a 'fold' or a 'split' column, not both")
    rows, seen = [], {}
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(row.values()):
            continue
        for c in REQUIRED + tuple(c for c in ("fold", "split") if c in columns):
            if not row.get(c):
                raise DatasetError(f"{path}:{line}: the field {c!r} is empty")
        fold = None
        if "fold" in columns:
            if not _is_int(row["fold"]) or int(row["fold"]) < 1:
                raise DatasetError(f"{path}:{line}: fold {row['fold']!r} is not a fold number (1, 2, ...)")
            fold = int(row["fold"])
        split = row.get("split") or None
        if split is not None and split not in ("train", "test"):
            raise DatasetError(f"{path}:{line}: split {split!r} is not 'train' or 'test'")
        r = Row(line, row["path"], row["label"], fold, split, row.get("group") or None)
        if r.clip_id in seen:
            raise DatasetError(f"{path}:{line}: clip {r.clip_id!r} is listed twice (also on line {seen[r.clip_id]})")
        seen[r.clip_id] = line
        rows.append(r)
    if not rows:
        raise DatasetError(f"{path}: no clips listed")
    if "fold" in columns:
        k = max(r.fold for r in rows)
        empty = sorted(set(range(1, k + 1)) - {r.fold for r in rows})
        if empty:
            raise DatasetError(f"{path}: the 'fold' column numbers folds 1-{k} but no clip is in fold(s) {empty}")
    return Manifest(path, tuple(rows), columns, digest)
