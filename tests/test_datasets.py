"""Beyond DFEW and MAFW (issue 24): the dataset registry, CREMA-D and RAVDESS read off their
published file names, speaker-independent generated folds, manifests, and DFEW/MAFW unchanged."""
import csv
import json

import pytest

from mma_dfer.config import ConfigError, load_config
from mma_dfer.data.annotations import AnnotationError, read_split
from tests.conftest import ROOT

# A DFEW and a MAFW run's identity at 9b81fcc (before the registry), on the split files below.
PINNED_9B81FCC = {"dfew_160": ("dfew", 2, "zero0_bf16", "f0531e0037e347a2"),
                  "demo": ("dfew", 2, "cpu_fp32", "5c04e34a6cfef66e"),
                  "mafw_224": ("mafw", 3, "zero2_bf16", "da6ad4e1f311c80c")}


def write_pinned_splits(root):
    for split, rows in (("train", [(1, 1), (2, 3), (3, 7)]), ("test", [(4, 2), (5, 5)])):
        d = root / "dfew" / "EmoLabel_DataSplit" / f"{split}(single-labeled)"
        d.mkdir(parents=True)
        (d / "set_2.csv").write_text("video_name,label\n" + "".join(f"{v},{lab}\n" for v, lab in rows))
    for split, rows in (("train", [("00001", "anger"), ("00002", "neutral")]), ("test", [("00003", "contempt")])):
        d = root / "mafw" / "split/single/no_caption/set_3"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{split}.txt").write_text("".join(f"{c}.mp4 {n}\n" for c, n in rows))


@pytest.mark.parametrize("config", sorted(PINNED_9B81FCC))
def test_dfew_and_mafw_runs_keep_their_identity_and_fingerprint_of_9b81fcc(config, tmp_path):
    from mma_dfer.training.trainer import planned_identity

    write_pinned_splits(tmp_path)
    dataset, fold, ds, expected = PINNED_9B81FCC[config]
    cfg = load_config(config, [f"data.root={tmp_path / dataset}", f"data.fold={fold}", "model.video_checkpoint=null",
                               "model.audio_checkpoint=null"])
    identity, fp = planned_identity(cfg, ds, 1)
    assert fp == expected, identity
    assert not any(k.startswith(("data.manifest", "data.class_names", "data.num_folds", "data.fold_seed",
                                 "data.vocal_channel")) for k in identity)
