"""launch/submit.py without SLURM: submitit's debug executor runs the same TrainJob."""
import json
import os
import subprocess
import sys

from mma_dfer.utils import parse_int_list
from tests.conftest import ROOT


def test_parse_int_list():
    assert parse_int_list("1-3,5") == [1, 2, 3, 5] and parse_int_list("112,160,224") == [112, 160, 224]


def test_debug_cluster_runs_the_fan_out_and_skips_finished_runs(demo_root, tmp_path):
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
    assert "nothing to submit" in again.stdout
