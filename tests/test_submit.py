"""launch/submit.py without SLURM: submitit's debug executor runs the same TrainJob."""
import json
import os
import subprocess
import sys

import pytest

from mma_dfer.utils import parse_int_list
from tests.conftest import ROOT


def test_parse_int_list():
    assert parse_int_list("1-3,5") == [1, 2, 3, 5] and parse_int_list("112,160,224") == [112, 160, 224]


def test_debug_cluster_runs_the_fan_out_and_skips_finished_runs(demo_root, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "launch/submit.py"), "--cluster", "debug", "--config", "configs/demo.yaml",
           "--deepspeed_config", "ds_configs/cpu_fp32.json", "--folds", "2", "--resolutions", "32",
           "--gpus-per-node", "0", "--runs-root", str(runs), "--set", f"data.root={demo_root}",
           "--set", "train.epochs=1"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted job" in proc.stdout and " done: UAR " in proc.stdout
    result = json.loads((runs / "dfew/res32/fold2/result.json").read_text())
    assert (result["fold"], result["resolution"]) == (2, 32)
    manifest = json.loads((runs / "submit_manifest.json").read_text())
    assert [(e["fold"], e["resolution"], e["cluster"]) for e in manifest] == [(2, 32, "debug")]
    status = subprocess.run([sys.executable, str(ROOT / "launch/submit.py"), "--status", "--runs-root", str(runs)],
                            cwd=ROOT, capture_output=True, text=True)
    assert "COMPLETED (result.json)" in status.stdout
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert "nothing to submit" in again.stdout and "holds this config's result" in again.stdout
    # another config for the same folder: not submitted, named, the old result kept; the job
    # itself refuses the same way (the check before submission aside)
    before = (runs / "dfew/res32/fold2/result.json").read_bytes()
    other = subprocess.run([*cmd, "--set", "train.seed=7"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert other.returncode == 2 and "submitted job" not in other.stdout, other.stdout + other.stderr
    assert "dfew res32 fold2 not submitted" in other.stderr and "train.seed: 1 in the result, 7 now" in other.stderr
    assert (runs / "dfew/res32/fold2/result.json").read_bytes() == before
    from mma_dfer.cluster.submit import TrainJob
    from mma_dfer.identity import IdentityError

    job = TrainJob("configs/demo.yaml", "ds_configs/cpu_fp32.json", ["data.dataset=dfew", "data.fold=2",
                   "data.resolution=32", f"data.root={demo_root}", "train.epochs=1", "train.seed=7"],
                   str(runs / "dfew/res32/fold2"))
    for var, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT="29999").items():
        monkeypatch.setenv(var, value)  # what the job exports is undone after the test
    with pytest.raises(IdentityError, match="train.seed: 1 in the result, 7 now"):
        job()
    assert (runs / "dfew/res32/fold2/result.json").read_bytes() == before
