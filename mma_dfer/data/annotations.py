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

CREMA-D and RAVDESS have no fold files: their folds are generated from their file names
(:mod:`mma_dfer.datasets.layouts`, :mod:`mma_dfer.datasets.folds`) into
``<data.root>/splits/<dataset>[-<vocal channel>]-k<K>-seed<S>/set_N/{train,test}.csv`` the first
time a fold is read, and read from there like official files from then on. A manifest
(``data.dataset: manifest``) lists its clips in a CSV (:mod:`mma_dfer.datasets.manifest`); its
folds are its ``fold`` or ``split`` column, or generated next to it
(``<manifest folder>/splits/<name>-<content hash>-k<K>-seed<S>/``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mma_dfer import datasets
from mma_dfer.datasets import DatasetError, folds, layouts
from mma_dfer.datasets.manifest import read_manifest
from mma_dfer.labels import CLASS_NAMES, to_canonical

# the datasets read off a folder layout: {name: {"video"|"frames"|"wav": folder under data.root}}
LAYOUTS = {name: datasets.get(name).layout for name in datasets.LAYOUT_DATASETS}


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


def make_sample(dataset: str, root: Path, clip_id: str, label: int, video: Optional[Path] = None, **extra) -> Sample:
    """A clip's sample in ``dataset``'s layout under ``root`` (``video``: a manifest's own path;
    a folder there is the clip's face frames)."""
    layout = datasets.get(dataset).layout
    frames = root / layout["frames"] / clip_id
    if video is None:
        video = layouts.video_path(dataset, root, clip_id)
    elif video.is_dir():
        frames = video
    return Sample(clip_id=clip_id, label=label, video=video, frames=frames,
                  wav=root / layout["wav"] / f"{clip_id}.wav", **extra)


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


def generated_folds(cfg) -> Path:
    """The folder of the generated folds of ``cfg`` (a DataConfig), written first if need be."""
    info = datasets.get(cfg.dataset)
    k = datasets.num_folds(cfg)
    names = datasets.class_names(cfg)
    skip = cfg.on_error == "skip"
    if info.splits == "manifest":
        m = read_manifest(cfg.manifest)
        items = [(r.clip_id, m.label_index(r, names), r.group or r.clip_id) for r in m.rows]
        folder = m.path.parent / "splits" / f"{m.path.stem}-{m.digest[:12]}-k{k}-seed{cfg.fold_seed}"
        if not folder.is_dir() and not any(r.group for r in m.rows):
            raise AnnotationError(f"{m.path}: generated folds need a 'group' column (the speaker: no speaker "
                                  "may be on both sides of a fold), or give the folds in a 'fold' column")
        return folds.ensure(folder, items, names, k, cfg.fold_seed)
    root = Path(cfg.root)
    channel = f"-{cfg.vocal_channel}" if cfg.dataset == "ravdess" else ""
    folder = root / "splits" / f"{cfg.dataset}{channel}-k{k}-seed{cfg.fold_seed}"
    if folder.is_dir():
        return folder
    try:
        items, _ = layouts.scan(cfg.dataset, root, cfg.vocal_channel, skip)
    except layouts.BadName as e:
        raise AnnotationError(f"{e} (data.on_error=skip skips it)") from None
    return folds.ensure(folder, items, names, k, cfg.fold_seed)


def manifest_root(cfg) -> Path:
    """Where a manifest's relative paths start: data.root, else the manifest's folder."""
    return Path(cfg.root) if cfg.root else Path(cfg.manifest).parent


def split_path(cfg, split: str) -> Path:
    """The file that lists ``split`` of fold ``cfg.fold`` (a manifest given with its folds has none)."""
    info = datasets.get(cfg.dataset)
    if info.splits == "official":
        if cfg.annotations == "official":
            return official_split_file(cfg.dataset, Path(cfg.root), cfg.fold, split)
        return Path((cfg.train_list if split == "train" else cfg.test_list).format(fold=cfg.fold))
    return folds.split_file(generated_folds(cfg), cfg.fold, split)


def _read_manifest_split(cfg, split: str) -> list[Sample]:
    m = read_manifest(cfg.manifest)
    names = datasets.class_names(cfg)
    root = manifest_root(cfg)
    if "fold" in m.columns:
        rows = [r for r in m.rows if (r.fold == cfg.fold) == (split == "test")]
    else:
        rows = [r for r in m.rows if r.split == split]
    return [make_sample("manifest", root, r.clip_id, m.label_index(r, names), video=root / r.path) for r in rows]


def _read_generated(cfg, path: Path) -> list[Sample]:
    names = datasets.class_names(cfg)
    rows = folds.read_split_file(path, names)
    if cfg.dataset == "manifest":
        m = read_manifest(cfg.manifest)
        root = manifest_root(cfg)
        by_id = {r.clip_id: r for r in m.rows}
        missing = [c for c, _, _ in rows if c not in by_id]
        if missing:
            raise AnnotationError(f"{path}: clip {missing[0]!r} is not in {m.path}")
        return [make_sample("manifest", root, c, label, video=root / by_id[c].path) for c, label, _ in rows]
    return [make_sample(cfg.dataset, Path(cfg.root), c, label) for c, label, _ in rows]


def read_split(cfg, split: str) -> list[Sample]:
    """The samples of ``split`` ("train" or "test") of fold ``cfg.fold``; never empty."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    try:
        return _read_split(cfg, split)
    except DatasetError as e:
        raise AnnotationError(str(e)) from None


def _read_split(cfg, split: str) -> list[Sample]:
    if cfg.dataset == "manifest":
        m = read_manifest(cfg.manifest)
        if m.given_folds() is not None:
            samples = _read_manifest_split(cfg, split)
            if not samples:
                raise AnnotationError(f"{m.path}: fold {cfg.fold} {split} split has no samples")
            return samples
        path = split_path(cfg, split)
        samples = _read_generated(cfg, path)
        if not samples:
            raise AnnotationError(f"{path}: fold {cfg.fold} {split} split has no samples")
        return samples
    if not cfg.root:
        raise AnnotationError("data.root is not set: point it at the dataset folder")
    root = Path(cfg.root)
    if not root.is_dir():
        raise AnnotationError(f"data.root={root} does not exist")
    path = split_path(cfg, split)
    if not path.is_file():
        raise AnnotationError(f"fold file not found: {path} (data.dataset={cfg.dataset}, data.fold={cfg.fold}, "
                              f"data.annotations={cfg.annotations})")
    if datasets.get(cfg.dataset).splits == "generated":
        samples = _read_generated(cfg, path)
    elif cfg.annotations == "official":
        samples = _read_official(cfg.dataset, root, path)
    else:
        samples = _read_list(cfg.dataset, root, path, cfg.annotations)
    if not samples:
        raise AnnotationError(f"{path}: fold {cfg.fold} {split} split has no samples")
    return samples
