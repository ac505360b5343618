"""Class orders. Each dataset has one canonical order: the dataset's own, as the registry
(:mod:`mma_dfer.datasets`) lists it.

* DFEW: the official labels 1..7 minus one (0 happy, 1 sad, 2 neutral, 3 angry, 4 surprise,
  5 disgust, 6 fear). The authors' annotation rows and MAE-DFER use this order too.
* MAFW: the order of the MAFW paper and of MMA-DFER's paper (anger ... disappointment,
  neutral). MAFW's own split files name the class, so no index is implied by the dataset;
  the public lists each use another permutation, converted on load (see ``LIST_ORDERS``).
* CREMA-D and RAVDESS: the order of their emotion codes; a manifest's: ``data.class_names``
  or its label names (:func:`mma_dfer.datasets.class_names`).
"""
from __future__ import annotations

from mma_dfer.datasets import REGISTRY

# {dataset: class names} of the datasets whose classes the registry fixes (a view of it).
CLASS_NAMES = {name: list(info.classes) for name, info in REGISTRY.items() if info.classes}

# Index order used by each public list format (label i of that format = name LIST_ORDERS[f][i]).
LIST_ORDERS = {
    "dfew": {fmt: CLASS_NAMES["dfew"] for fmt in ("mma", "maedfer", "hicmae")},
    "mafw": {
        # katerynaCh/MMA-DFER annotation/MAFW_set_*_faces.txt
        "mma": ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear", "contempt",
                "anxiety", "helplessness", "disappointment"],
        # sunlicai/MAE-DFER preprocess/mafw.py (HiCMAE uses the same list)
        "maedfer": ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
                    "anxiety", "helplessness", "disappointment"],
        "hicmae": ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
                   "anxiety", "helplessness", "disappointment"],
    },
}


def to_canonical(dataset: str, fmt: str) -> list[int]:
    """Map a list format's label index to the canonical index: ``canon = table[label]``."""
    canon = CLASS_NAMES[dataset]
    return [canon.index(name) for name in LIST_ORDERS[dataset][fmt]]
