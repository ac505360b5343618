"""launch/submit.py without SLURM: submitit's debug executor runs the same TrainJob; the sbatch
scripts' environment for the training process, with a stand-in srun."""
import json
import os
import subprocess
import sys
from pathlib import Path

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
    from mma_dfer.runs.identity import IdentityError

    job = TrainJob("configs/demo.yaml", "ds_configs/cpu_fp32.json", ["data.dataset=dfew", "data.fold=2",
                   "data.resolution=32", f"data.root={demo_root}", "train.epochs=1", "train.seed=7"],
                   str(runs / "dfew/res32/fold2"))
    for var, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT="29999").items():
        monkeypatch.setenv(var, value)  # what the job exports is undone after the test
    with pytest.raises(IdentityError, match="train.seed: 1 in the result, 7 now"):
        job()
    assert (runs / "dfew/res32/fold2/result.json").read_bytes() == before


def test_every_job_shares_one_compile_cache(demo_root, tmp_path, monkeypatch):
    """Issue 21, goal 5: every job of a grid (or sweep) reads and fills one inductor cache under
    the runs root, so the first job of a geometry pays the compilation; a user's own setting wins."""
    from mma_dfer.cluster import submit
    from mma_dfer.training import trainer

    seen = []

    def training(cfg, ds_config, resume):  # what the job's training process would see
        seen.append(os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
        return {"uar": 50.0, "war": 50.0}
    monkeypatch.setattr(trainer, "run", training)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # recorded, so that the test's value is undone
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    args = ["--cluster", "debug", "--config", str(ROOT / "configs/demo.yaml"), "--deepspeed_config",
            str(ROOT / "ds_configs/cpu_fp32.json"), "--folds", "1,2", "--resolutions", "32", "--gpus-per-node", "0",
            "--set", f"data.root={demo_root}"]
    assert submit.main([*args, "--runs-root", str(tmp_path / "runs")]) == 0
    assert seen == [str((tmp_path / "runs").resolve() / ".compile-cache")] * 2
    seen.clear()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert submit.main([*args, "--runs-root", str(tmp_path / "other")]) == 0
    assert seen == [str(tmp_path / "mine")] * 2


@pytest.mark.parametrize("script", ["all_folds.sh", "sweep.sh"])
def test_sbatch_tasks_share_one_compile_cache(tmp_path, script):
    """The array tasks of all_folds.sh and sweep.sh (every variant of a sweep) start training with
    the runs root's cache; a user's own setting wins. srun is a stand-in that writes down the
    variable it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\necho "$TORCHINDUCTOR_CACHE_DIR" >> "$SEEN"\n')
    (bin_dir / "srun").chmod(0o755)
    runs, seen = tmp_path / "runs", tmp_path / "seen"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}", SEEN=str(seen), RUNS_ROOT=str(runs),
               MMA_DFER_HOME=str(ROOT), VENV=str(tmp_path / "no-venv"), CPU_ONLY="1", FOLDS="1", RESOLUTIONS="32",
               CONFIG="configs/demo.yaml", TASK="0", AGGREGATE="0")
    cmd = ["bash", str(ROOT / "slurm" / script)] + (["configs/sweeps/table4.yaml"] if script == "sweep.sh" else [])
    for own in ("", str(tmp_path / "mine")):
        proc = subprocess.run(cmd, cwd=ROOT, env={**env, **({"TORCHINDUCTOR_CACHE_DIR": own} if own else {})},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert seen.read_text().splitlines() == [str(runs / ".compile-cache"), str(tmp_path / "mine")]
