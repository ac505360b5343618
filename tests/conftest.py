import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def require(reason: str) -> None:
    """Skip a test whose system tools are missing (``reason`` says which), but fail it in CI,
    which installs them (.ci/system-deps.sh): a suite must not pass there by skipping."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


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


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The demo's dataset: 10 clips per DFEW class (56 train / 14 test clips in fold 1)."""
    from mma_dfer.data.synthetic import make_dataset

    return make_dataset("dfew", tmp_path_factory.mktemp("demo"), clips_per_class=10, seed=0)


def train_cmd(*args, launcher="python", gpus=1):
    import sys

    if launcher == "deepspeed":
        return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(gpus),
                str(ROOT / "launch/train.py"), *args]
    return [sys.executable, str(ROOT / "launch/train.py"), *args]


def run_train(*args, launcher="python", gpus=1, env=None, check=True):
    import subprocess

    full_env = {**os.environ, "DS_ACCELERATOR": "cpu", **(env or {})}
    proc = subprocess.run(train_cmd(*args, launcher=launcher, gpus=gpus), cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"training exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


CPU_SWEEP_VARIANTS = ["full", "plain"]


@pytest.fixture(scope="session")
def cpu_sweep(demo_root, tmp_path_factory):
    """Table 4's "full" and "plain" (no prompts, no MTT, no FB) variants of the tiny model on the
    demo data, folds 1-2, 2 short epochs validated every epoch, through submitit's debug executor
    (tests/test_sweep.py; tests/test_slurm.py compares its sbatch sweep with it)."""
    import subprocess

    runs = tmp_path_factory.mktemp("sweep") / "runs"
    cmd = [sys.executable, str(ROOT / "launch/submit.py"), "--cluster", "debug",
           "--sweep", "configs/sweeps/table4.yaml", "--variants", ",".join(CPU_SWEEP_VARIANTS),
           "--config", "configs/demo.yaml", "--deepspeed_config", "ds_configs/cpu_fp32.json", "--folds", "1,2", "--resolutions", "32", "--gpus-per-node", "0",
           "--runs-root", str(runs), "--set", f"data.root={demo_root}", "--set", "train.epochs=2",
           "--set", "train.validate_every=1", "--set", "train.max_steps_per_epoch=3"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return runs, cmd, env, proc.stdout


def result_stamp(dataset, res, fold, *overrides) -> dict:
    """``config_fingerprint`` and ``run_identity`` for a hand-made result.json: the identity a run
    of the defaults (plus ``overrides``) on that fold would have (its fold lists made up)."""
    from types import SimpleNamespace

    from mma_dfer.config import load_config
    from mma_dfer.runs.identity import fingerprint, run_identity

    cfg = load_config(None, [f"data.dataset={dataset}", f"data.resolution={res}", f"data.fold={fold}", *overrides])
    clips = [SimpleNamespace(clip_id=f"{fold}-{i}", label=i % 7) for i in range(10)]
    identity = run_identity(cfg, {}, clips[:8], clips[8:])
    return {"config_fingerprint": fingerprint(identity), "run_identity": identity}
