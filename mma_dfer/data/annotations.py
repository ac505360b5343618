"""Fold files of DFEW and MAFW, in the formats the datasets ship and in public list formats.

Every reader returns :class:`Sample` records with *canonical* labels (:mod:`mma_dfer.labels`)
and paths resolved under ``data.root`` in the dataset's real layout:

=========  =======================================  ==================================
dataset    official split files                     clips / frames / extracted audio
=========  =======================================  ==================================
DFEW       ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_N.csv``  (``video_name,label``,
           labels 1-7)                                ``Clip/original/ID.mp4``, ``Clip/clip_224x224/ID/``,
                                                      ``Clip/wav/ID.wav``
MAFW       ``split/single/no_caption/set_N/{train,test}.txt``  (``ID.mp4 <class name>``)
                                                      ``data/clips/ID.mp4``, ``data/faces/ID/``,
                                                      ``data/wav/ID.wav``
=========  =======================================  ==================================

List formats of public code (``data.annotations``): ``mma`` (MMA-DFER: ``<frame_dir>
<num_frames> <label>``), ``maedfer`` (``<frame_dir> <label>``), ``hicmae`` (``<frame_dir> <wav>
<label>``). Their frame paths point at the machine they were made on, so only the last path
component (the clip id) is kept and resolved under ``data.root``; a HiCMAE wav path is kept as
given if it exists, else resolved the same way. Labels are converted from each format's class
order to the canonical one.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mma_dfer.labels import CLASS_NAMES, to_canonical

LAYOUTS = {
    "dfew": {"video": "Clip/original", "frames": "Clip/clip_224x224", "wav": "Clip/wav"},
    "mafw": {"video": "data/clips", "frames": "data/faces", "wav": "data/wav"},
}


class AnnotationError(ValueError):
    """A fold file is missing, malformed, empty, or has an unknown label; names the file and line."""


@dataclass
class Sample:
    clip_id: str
    label: int  # canonical index
    video: Path  # the mp4 clip
    frames: Path  # the face-frame folder
    wav: Path  # extracted audio (used when it exists; else the clip's own audio track)
    num_frames: Optional[int] = None  # as listed (MMA-DFER rows), informative only


def official_split_file(dataset: str, root: Path, fold: int, split: str) -> Path:
    if dataset == "dfew":
        return root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
    return root / "split" / "single" / "no_caption" / f"set_{fold}" / f"{split}.txt"


def make_sample(dataset: str, root: Path, clip_id: str, label: int, **extra) -> Sample:
    layout = LAYOUTS[dataset]
    return Sample(clip_id=clip_id, label=label, video=root / layout["video"] / f"{clip_id}.mp4",
                  frames=root / layout["frames"] / clip_id, wav=root / layout["wav"] / f"{clip_id}.wav", **extra)


def _read_official(dataset: str, root: Path, path: Path) -> list[Sample]:
    names = CLASS_NAMES[dataset]
    samples = []
    if dataset == "dfew":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"video_name", "label"} <= set(reader.fieldnames):
                raise AnnotationError(f"{path}: expected a 'video_name,label' header, got {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                try:
                    label = int(row["label"]) - 1
                    clip = f"{int(row['video_name']):05d}"
                except (TypeError, ValueError):
                    raise AnnotationError(f"{path}:{line}: malformed row {row}") from None
                if not 0 <= label < len(names):
                    raise AnnotationError(f"{path}:{line}: label {label + 1} is not a DFEW label (1-7)")
                samples.append(make_sample(dataset, root, clip, label))
        return samples
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        parts = text.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise AnnotationError(f"{path}:{line}: expected '<clip>.mp4 <class>', got {text!r}")
        if parts[1] not in names:
            raise AnnotationError(f"{path}:{line}: unknown MAFW class {parts[1]!r} (expected one of {names})")
        samples.append(make_sample(dataset, root, Path(parts[0]).stem, names.index(parts[1])))
    return samples


def _read_list(dataset: str, root: Path, path: Path, fmt: str) -> list[Sample]:
    columns = {"mma": 3, "maedfer": 2, "hicmae": 3}[fmt]
    table = to_canonical(dataset, fmt)
    samples = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        parts = text.split()
        if not parts:
            continue
        if len(parts) != columns:
            raise AnnotationError(f"{path}:{line}: a {fmt!r} row has {columns} columns, got {text!r}")
        try:
            label = int(parts[-1])
        except ValueError:
            raise AnnotationError(f"{path}:{line}: label {parts[-1]!r} is not an integer") from None
        if not 0 <= label < len(table):
            raise AnnotationError(f"{path}:{line}: label {label} out of range 0-{len(table) - 1} for {dataset}")
        clip = Path(parts[0].rstrip("/")).name
        sample = make_sample(dataset, root, clip, table[label])
        if fmt == "mma":
            sample.num_frames = int(parts[1])
        if fmt == "hicmae":
            wav = Path(parts[1])
            sample.wav = wav if wav.exists() else sample.wav.with_name(wav.name)
        samples.append(sample)
    return samples


def read_split(cfg, split: str) -> list[Sample]:
    """The samples of ``split`` ("train" or "test") of fold ``cfg.fold``; never empty."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if not cfg.root:
        raise AnnotationError("data.root is not set: point it at the dataset folder")
    root = Path(cfg.root)
    if not root.is_dir():
        raise AnnotationError(f"data.root={root} does not exist")
    if cfg.annotations == "official":
        path = official_split_file(cfg.dataset, root, cfg.fold, split)
    else:
        path = Path((cfg.train_list if split == "train" else cfg.test_list).format(fold=cfg.fold))
    if not path.is_file():
        raise AnnotationError(f"fold file not found: {path} (data.dataset={cfg.dataset}, data.fold={cfg.fold}, "
                              f"data.annotations={cfg.annotations})")
    if cfg.annotations == "official":
        samples = _read_official(cfg.dataset, root, path)
    else:
        samples = _read_list(cfg.dataset, root, path, cfg.annotations)
    if not samples:
        raise AnnotationError(f"{path}: fold {cfg.fold} {split} split has no samples")
    return samples
