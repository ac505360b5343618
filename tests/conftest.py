import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_cfg():
    from mma_dfer.config import load_config

    return load_config(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="session")
def mafw_root(tmp_path_factory):
    from mma_dfer.data.synthetic import make_dataset

    return make_dataset("mafw", tmp_path_factory.mktemp("mafw"), clips_per_class=5, seed=3)


@pytest.fixture(scope="session")
def dfew_root(tmp_path_factory):
    from mma_dfer.data.synthetic import make_dataset

    return make_dataset("dfew", tmp_path_factory.mktemp("dfew"), clips_per_class=5, seed=4)


def data_cfg(root, dataset, *overrides):
    from mma_dfer.config import load_config

    return load_config(None, [f"data.dataset={dataset}", f"data.root={root}", *overrides]).data
