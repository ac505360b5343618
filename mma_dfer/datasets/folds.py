"""Generated folds: speaker-independent, stratified by class, deterministic from a seed.

Datasets without official fold files (CREMA-D, RAVDESS, a manifest without a ``fold`` or
``split`` column) get K folds: every speaker (``group``) goes whole into the test part of one
fold, so no speaker is on both sides of any fold, and the speakers are dealt so that each fold's
test part has about 1/K of every class. The folds are written once, as split files
(``set_<k>/{train,test}.csv``: ``clip,label,group``, the label by name) in a folder named by
what made them, and from then on read like official fold files: a run's identity hashes the
lists it read, and a later change of the generator cannot move a clip between folds of a
dataset whose folds already exist.
"""
from __future__ import annotations

import csv
import io
import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from mma_dfer.datasets import DatasetError

HEADER = ("clip", "label", "group")


def assign(items: list[tuple], k: int, seed: int) -> dict:
    """{group: fold 1..k} for ``items`` = [(clip_id, label, group)]: groups shuffled by ``seed``,
    then dealt largest first, each to the fold whose per-class counts it brings closest to
    1/k of every class's total (ties: the fold with fewer clips, then the lower number)."""
    groups: dict = {}
    for _, label, group in items:
        groups.setdefault(group, Counter())[label] += 1
    if len(groups) < k:
        raise DatasetError(f"{len(groups)} speakers cannot fill {k} speaker-independent folds; "
                           "lower data.num_folds")
    order = sorted(groups, key=str)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -sum(groups[g].values()))  # stable: equal sizes keep the seeded order
    totals = Counter(label for _, label, _ in items)
    counts = [Counter() for _ in range(k)]
    sizes = [0] * k
    out = {}
    for g in order:
        def cost(f: int) -> tuple:
            grow = sum((counts[f][c] + n - totals[c] / k) ** 2 - (counts[f][c] - totals[c] / k) ** 2
                       for c, n in groups[g].items())
            return grow, sizes[f], f
        f = min(range(k), key=cost)
        counts[f].update(groups[g])
        sizes[f] += sum(groups[g].values())
        out[g] = f + 1
    return out


def split_text(rows: list[tuple], names: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows((clip, names[label], group) for clip, label, group in rows)
    return buf.getvalue()


def ensure(folder: Path, items: list[tuple], names: list[str], k: int, seed: int) -> Path:
    """Write the k folds of ``items`` into ``folder`` unless it exists (then it is left as it
    is). Written into a temporary sibling and renamed into place, so that concurrent runs (an
    array's tasks) all read one complete set: the first rename wins, the others are dropped."""
    if folder.is_dir():
        return folder
    fold_of = assign(items, k, seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for f in range(1, k + 1):
            d = tmp / f"set_{f}"
            d.mkdir()
            for split in ("train", "test"):
                rows = [it for it in items if (fold_of[it[2]] == f) == (split == "test")]
                (d / f"{split}.csv").write_text(split_text(rows, names))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
    except OSError as e:
        raise DatasetError(f"cannot write the generated folds into {folder} ({e.strerror or e}); "
                           "make the folder writable or generate them once where it is") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def split_file(folder: Path, fold: int, split: str) -> Path:
    return folder / f"set_{fold}" / f"{split}.csv"


def read_split_file(path: Path, names: list[str]) -> list[tuple]:
    """[(clip_id, label index, group)] of one generated split file; named errors for bad rows."""
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != HEADER:
            raise DatasetError(f"{path}: expected the header {','.join(HEADER)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            if row["label"] not in names:
                raise DatasetError(f"{path}:{line}: label {row['label']!r} is not one of the classes {names}")
            out.append((row["clip"], names.index(row["label"]), row["group"]))
    return out
