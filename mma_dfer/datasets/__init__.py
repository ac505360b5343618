"""The dataset registry: every fact about a dataset, in one place, importing no torch.

Each :class:`DatasetInfo` says what a dataset is: its class names in its own label order, how
its folds are defined (``official`` fold files it ships, ``generated`` speaker-independent folds
written once into its folder, or a ``manifest`` CSV), its number of folds, how its faces are
prepared by default, where its files are, and the paper's Table 1 numbers where the paper has
them (DFEW and MAFW only). Config validation, labels, the readers, training, evaluation,
``predict``, ``prepare``, ``verify``, the aggregator, the report, ``slurm/all_folds.sh`` and
submitit all read it: a new dataset is one entry here (and, if it is read off a file layout,
its file names' parser in :mod:`mma_dfer.datasets.layouts`).

``data.dataset: manifest`` is any dataset given as a CSV (:mod:`mma_dfer.datasets.manifest`):
its class names and folds come from the config and the file, through :func:`class_names` and
:func:`num_folds`, which answer for every dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mma_dfer.datasets.errors import DatasetError
from mma_dfer.datasets.manifest import read_manifest


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str  # as the tables print it
    classes: tuple  # in the dataset's label order (empty: from the config or the manifest)
    splits: str  # "official" (fold files it ships), "generated" (written once into its folder) or "manifest"
    folds: int  # the protocol's folds (the default for generated and manifest folds)
    # how its faces are prepared: "shipped" (aligned face frames come with it: training reads them
    # after a plain prepare), "mtcnn" (prepare --faces mtcnn, the paper's setting) or "none" (as given)
    faces: str
    # folders under data.root: the clips, the face-frame folders, the extracted 16 kHz wavs
    layout: dict = field(default_factory=dict)
    # MMA-DFER paper, Table 1: resolution -> (UAR, WAR, UAR 2-clip, WAR 2-clip)
    paper: dict = field(default_factory=dict)
    # published clip counts of a fold: fold -> (train, test) (verify prints them beside ours)
    published: dict = field(default_factory=dict)


REGISTRY = {d.name: d for d in (
    DatasetInfo(
        "dfew", "DFEW", ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"), "official", 5, "shipped",
        {"video": "Clip/original", "frames": "Clip/clip_224x224", "wav": "Clip/wav"},
        {"112": (64.24, 75.40, 64.35, 75.48), "160": (66.61, 77.15, 66.51, 77.10),
         "224": (67.01, 77.51, 66.85, 77.43)},
        {1: (9356, 2341)}),
    DatasetInfo(
        "mafw", "MAFW", ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "contempt", "anxiety",
                         "helplessness", "disappointment", "neutral"), "official", 5, "mtcnn",
        {"video": "data/clips", "frames": "data/faces", "wav": "data/wav"},
        {"112": (43.34, 56.46, 43.29, 56.60), "160": (44.19, 57.90, 44.07, 57.85),
         "224": (44.11, 58.52, 44.25, 58.45)},
        {1: (7333, 1838)}),
    # CREMA-D: VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv, AudioWAV/<same>.wav (16 kHz);
    # classes in the order of its emotion codes ANG DIS FEA HAP NEU SAD
    DatasetInfo(
        "cremad", "CREMA-D", ("anger", "disgust", "fear", "happy", "neutral", "sad"), "generated", 5, "mtcnn",
        {"video": "VideoFlash", "frames": "faces", "wav": "AudioWAV"}),
    # RAVDESS: Actor_NN/MM-VC-EE-II-SS-RR-AA.mp4; classes in the order of its emotion codes 01-08
    DatasetInfo(
        "ravdess", "RAVDESS", ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
        "generated", 5, "mtcnn", {"video": "", "frames": "faces", "wav": "wav"}),
    DatasetInfo("manifest", "manifest", (), "manifest", 5, "none", {"video": "", "frames": "faces", "wav": "wav"}),
)}
NAMES = tuple(REGISTRY)
LAYOUT_DATASETS = tuple(n for n, d in REGISTRY.items() if d.splits != "manifest")  # read off a folder layout


def get(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {list(NAMES)}")
    return REGISTRY[name]


def class_names(data) -> list[str]:
    """The class names of the config section ``data`` (a DataConfig or anything with its
    fields), in label order: the registry's, or for a manifest ``data.class_names`` or, when
    that is unset, the manifest's label names sorted."""
    info = get(data.dataset)
    if info.classes:
        return list(info.classes)
    if data.class_names:
        return list(data.class_names)
    return read_manifest(data.manifest).label_names()


def num_folds(data) -> int:
    """K of ``data.fold`` 1..K: the registry's for official folds, ``data.num_folds`` (default
    the registry's) for generated ones; a manifest's ``fold`` column's largest fold, 1 for a
    ``split`` column, else generated as above."""
    info = get(data.dataset)
    if info.splits == "official":
        return info.folds
    if info.splits == "manifest":
        given = read_manifest(data.manifest).given_folds()
        if given is not None:
            return given
    return data.num_folds or info.folds


def paper_dataset(num_classes: int) -> Optional[str]:
    """The paper's dataset (one with Table 1 numbers) with this many classes, or None: what an
    authors' released checkpoint, which names no dataset, was trained on."""
    found = [n for n, d in REGISTRY.items() if d.paper and len(d.classes) == num_classes]
    return found[0] if len(found) == 1 else None


def paper(dataset: str, resolution) -> Optional[tuple]:
    """The paper's (UAR, WAR, UAR*, WAR*) for this dataset and resolution, or None."""
    info = REGISTRY.get(dataset)
    return info.paper.get(str(resolution)) if info else None
