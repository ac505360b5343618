"""The cluster path on a real single-node SLURM with accounting (slurm/local-cluster/):
`sbatch slurm/all_folds.sh` with its aggregation job, `launch/submit.py` through submitit, and a
task requeued mid-run that resumes and ends with the same result as an uninterrupted run."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, require, run_train

pytestmark = pytest.mark.slow


def _can_run_slurm() -> str:
    if os.geteuid() != 0:
        return "needs root to start the local SLURM"
    missing = [b for b in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd") if not shutil.which(b)]
    return f"SLURM packages missing: {missing} (.ci/system-deps.sh installs them)" if missing else ""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    require(_can_run_slurm())
    # munge and mysql must traverse the state path: not under pytest's 0700 temp folders
    state = Path(tempfile.mkdtemp(prefix="mma-dfer-slurm-", dir="/tmp"))
    state.chmod(0o755)
    subprocess.run(["bash", str(ROOT / "slurm/local-cluster/start.sh"), str(state)], check=True, timeout=300)
    env = {**os.environ, "SLURM_CONF": str(state / "etc/slurm.conf"), "DS_ACCELERATOR": "cpu"}
    yield env
    subprocess.run(["bash", str(ROOT / "slurm/local-cluster/stop.sh"), str(state)], timeout=120)
    shutil.rmtree(state, ignore_errors=True)


def sh(cmd, env, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


def wait_idle(env, timeout=900):
    """Until the queue is empty (every job finished)."""
    end = time.time() + timeout
    while time.time() < end:
        out = sh(["squeue", "-h", "-o", "%i %T"], env).stdout.strip()
        if not out:
            return
        time.sleep(3)
    raise AssertionError(f"jobs still queued after {timeout}s:\n{sh(['squeue'], env).stdout}")


def job_states(env, job_id):
    out = sh(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State"], env).stdout
    return dict(line.split("|") for line in out.strip().splitlines())


def sbatch_all_folds(env, runs, folds, resolutions, sets, array, python=sys.executable):
    exports = ",".join(["ALL", "CPU_ONLY=1", f"FOLDS={folds}", f"RESOLUTIONS={resolutions}",
                        "CONFIG=configs/demo.yaml", f"SETS={sets}", f"RUNS_ROOT={runs}", f"MMA_DFER_HOME={ROOT}",
                        f"VENV={Path(python).parent.parent}"])
    proc = sh(["sbatch", "--parsable", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=3G", f"--array={array}",
               f"--output={runs}/slurm-%A_%a.out", f"--export={exports}", str(ROOT / "slurm/all_folds.sh")],
              env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def test_sbatch_all_folds_runs_the_grid_and_the_aggregation(slurm, demo_root, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    job = sbatch_all_folds(slurm, runs, "1 2", "32 48", f"data.root={demo_root} train.epochs=2", "0-3")
    wait_idle(slurm)
    states = job_states(slurm, job)
    assert [states.get(f"{job}_{i}") for i in range(4)] == ["COMPLETED"] * 4, states
    for res in (32, 48):
        for fold in (1, 2):
            r = json.loads((runs / f"dfew/res{res}/fold{fold}/result.json").read_text())
            assert (r["fold"], r["resolution"], r["num_test_clips"]) == (fold, res, 14)
    agg = json.loads((runs / "aggregate.json").read_text())
    assert agg["dfew"]["32"]["complete"] and agg["dfew"]["48"]["complete"]
    table = (runs / f"aggregate-{job}.out").read_text()
    assert "### DFEW" in table and "| 48 |" in table
    # resubmission skips the runs finished with the same config; another config's run fails its
    # task naming the field and leaves the folder as it was
    job2 = sbatch_all_folds(slurm, runs, "1 2", "32 48", f"data.root={demo_root} train.epochs=2", "0-1")
    wait_idle(slurm)
    assert "already finished" in (runs / f"slurm-{job2}_0.out").read_text()
    before = (runs / "dfew/res32/fold1/result.json").read_bytes()
    job3 = sbatch_all_folds(slurm, runs, "1 2", "32 48", f"data.root={demo_root} train.epochs=3", "0")
    wait_idle(slurm)
    assert job_states(slurm, job3).get(f"{job3}_0") == "FAILED"
    out = (runs / f"slurm-{job3}_0.out").read_text()
    assert "train.epochs: 2 in the result, 3 now" in out and "failed with exit code 2" in out
    assert (runs / "dfew/res32/fold1/result.json").read_bytes() == before


def test_submitit_fans_out_on_slurm(slurm, demo_root, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "launch/submit.py"), "--cluster", "slurm", "--dataset", "dfew", "--folds", "1-2",
           "--resolutions", "32", "--config", "configs/demo.yaml", "--deepspeed_config", "ds_configs/cpu_fp32.json",
           "--gpus-per-node", "0", "--cpus-per-task", "1", "--mem", "3G", "--time", "30", "--runs-root", str(runs),
           "--set", f"data.root={demo_root}", "--set", "train.epochs=1", "--wait"]
    proc = subprocess.run(cmd, env=slurm, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("submitted job") == 2 and proc.stdout.count(" done: UAR ") == 2
    status = subprocess.run([sys.executable, str(ROOT / "launch/submit.py"), "--status", "--runs-root", str(runs)],
                            env=slurm, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and status.stdout.count("COMPLETED") == 2, status.stdout
    agg = subprocess.run([sys.executable, str(ROOT / "launch/aggregate.py"), str(runs), "--folds", "1-2"],
                         capture_output=True, text=True)
    assert agg.returncode == 0 and "| 32 |" in agg.stdout


def test_requeued_task_resumes_and_matches_an_uninterrupted_run(slurm, demo_root, tmp_path):
    sets = f"data.root={demo_root} train.epochs=4"
    runs = tmp_path / "runs"
    runs.mkdir()
    job = sbatch_all_folds(slurm, runs, "1", "32", sets, "0")
    task = f"{job}_0"
    marker = runs / "dfew/res32/fold1/checkpoints/epoch001/complete.json"
    end = time.time() + 600
    while not marker.exists():
        assert time.time() < end, "no checkpoint appeared"
        time.sleep(1)
    assert sh(["scontrol", "requeue", task], slurm).returncode == 0
    time.sleep(3)  # SLURM holds a requeued job ~120 s; release it (not in the same second)
    sh(["scontrol", "update", f"JobId={task}", "StartTime=now"], slurm)
    wait_idle(slurm)
    log = (runs / f"slurm-{job}_0.out").read_text()
    assert "restart 1" in log and "resumed from" in log, log[-3000:]
    resumed = json.loads((runs / "dfew/res32/fold1/result.json").read_text())
    ref_dir = tmp_path / "reference"
    run_train("--config", str(ROOT / "configs/demo.yaml"), "--set", f"data.root={demo_root}", "--set", "train.epochs=4",
              "--set", "data.resolution=32", "--set", f"output_dir={ref_dir}")
    reference = json.loads((ref_dir / "result.json").read_text())
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix"):
        assert resumed[key] == reference[key], key


def test_sbatch_sweep_runs_its_variants_and_the_report(slurm, demo_root, tmp_path, cpu_sweep):
    """slurm/sweep.sh with its default 30-task array: the 2 runs of the reduced Table 4 sweep, the
    surplus tasks cancelled, the report job; the same results as the debug executor's sweep, which
    validated every epoch (so validation leaves the result unchanged); resubmission skips."""
    runs = tmp_path / "runs"
    runs.mkdir()
    exports = ",".join(["ALL", "CPU_ONLY=1", "FOLDS=1", "RESOLUTIONS=32", "VARIANTS=full plain",
                        "CONFIG=configs/demo.yaml",
                        f"SETS=data.root={demo_root} train.epochs=2 train.max_steps_per_epoch=3", f"RUNS_ROOT={runs}",
                        f"MMA_DFER_HOME={ROOT}", f"VENV={Path(sys.executable).parent.parent}"])
    sbatch = ["sbatch", "--parsable", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=3G",
              f"--output={runs}/slurm-%A_%a.out", f"--export={exports}"]
    proc = sh([*sbatch, str(ROOT / "slurm/sweep.sh"), "configs/sweeps/table4.yaml"], slurm, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    wait_idle(slurm)
    states = job_states(slurm, job)
    assert states.get(f"{job}_0") == states.get(f"{job}_1") == "COMPLETED", states
    assert all(state.split()[0] in ("CANCELLED", "COMPLETED") for state in states.values()), states  # "CANCELLED by 0"
    reference = cpu_sweep[0]
    for variant in ("full", "plain"):
        r = json.loads((runs / f"table4/{variant}/dfew/res32/fold1/result.json").read_text())
        ref = json.loads((reference / f"table4/{variant}/dfew/res32/fold1/result.json").read_text())
        for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "confusion_matrix_2clip"):
            assert r[key] == ref[key], (variant, key)
        log = [json.loads(x) for x in (runs / f"table4/{variant}/dfew/res32/fold1/log.jsonl").read_text().splitlines()]
        assert [x["epoch"] for x in log if "test/uar" in x] == [2]  # the final test only
    assert "wrote" in (runs / f"report-{job}.out").read_text() and (runs / "report.html").stat().st_size > 10000
    assert (runs / "table4/sweep.yaml").is_file()
    job2 = sh([*sbatch, "--array=0-1", str(ROOT / "slurm/sweep.sh"), "configs/sweeps/table4.yaml"], slurm, cwd=ROOT)
    job2 = job2.stdout.strip().split(";")[0]
    wait_idle(slurm)
    for task in (0, 1):
        assert "already finished" in (runs / f"slurm-{job2}_{task}.out").read_text()


def test_a_run_preempted_twenty_times_ends_as_an_uninterrupted_one(slurm, demo_root, tmp_path):
    """The soak: one demo run under slurm/all_folds.sh preempted 20 times at random moments (in
    its start-up, its training steps, its checkpoint writes), by `scontrol requeue` (SIGTERM, then
    SIGKILL after KillWait) or by SIGKILL of its training process (the lease names it) and a
    requeue; it ends with the uninterrupted run's metrics and bit-identical final weights. The
    moments are drawn in steps of the run's own progress (its log lines), so that the run goes on
    between preemptions however fast the machine is."""
    import random

    import torch

    from mma_dfer.runs import checkpoints, lease

    rng = random.Random(26)
    # 20 epochs of 7 steps: room for 20 preemptions of 0-3 steps each and the steps a stop adds
    settings = ["data.root=" + str(demo_root), "train.epochs=20", "train.log_every=1"]
    runs = tmp_path / "runs"
    runs.mkdir()
    job = sbatch_all_folds(slurm, runs, "1", "32", " ".join(settings), "0")
    task = f"{job}_0"
    run_dir = runs / "dfew/res32/fold1"

    def requeue():
        sh(["scontrol", "requeue", task], slurm)
        time.sleep(2)  # SLURM holds a requeued job ~120 s; release it (not in the same second)
        sh(["scontrol", "update", f"JobId={task}", "StartTime=now"], slurm)

    def state():
        return sh(["squeue", "-h", "-j", task, "-o", "%T"], slurm).stdout.strip()

    def holder():
        try:
            return json.loads((run_dir / lease.FILE).read_text())
        except (OSError, ValueError):
            return None

    def log_lines():
        try:
            return (run_dir / "log.jsonl").read_text().count("\n")
        except OSError:
            return 0

    kinds, last_token = [], None
    while len(kinds) < 20:
        end = time.time() + 300
        while (now := state()) != "RUNNING":
            assert time.time() < end, f"not running again after {len(kinds)} preemptions"
            if not now:  # a killed step failed the job before it was requeued
                requeue()
            elif now == "PENDING":  # still held (the release came while it was completing)
                sh(["scontrol", "update", f"JobId={task}", "StartTime=now"], slurm)
            time.sleep(1)
        if rng.random() < 0.2:  # in the start-up
            time.sleep(rng.uniform(0, 3))
        else:  # once this start holds the lease, after 0-3 more steps and a random fraction of one
            while (h := holder()) is None or h.get("token") == last_token:
                assert time.time() < end, "the run never took its folder's lease"
                time.sleep(0.2)
            last_token, lines, steps = h["token"], log_lines(), rng.randint(0, 3)
            while log_lines() < lines + steps and time.time() < end:
                time.sleep(0.2)
            time.sleep(rng.uniform(0, 1.5))
        assert not (run_dir / "result.json").exists(), f"the run finished after only {len(kinds)} preemptions"
        h = holder()
        if rng.random() < 0.3 and h and h.get("token") == last_token and lease._pid_alive(h["pid"]):
            os.kill(h["pid"], 9)  # this test's own job's training process, named by its lease
            kinds.append("kill")
        else:
            kinds.append("requeue")
        requeue()
    end = time.time() + 900
    while not (run_dir / "result.json").exists():
        assert time.time() < end, "the run never finished"
        if not state():
            requeue()
        time.sleep(3)
    wait_idle(slurm)
    log = (runs / f"slurm-{job}_0.out").read_text()
    assert "restart 20" in log and log.count("resumed from") >= 5, (kinds, log[-3000:])
    soaked = json.loads((run_dir / "result.json").read_text())
    ref_dir = tmp_path / "reference"
    run_train("--config", str(ROOT / "configs/demo.yaml"), *[a for kv in settings for a in ("--set", kv)],
              "--set", "data.resolution=32", "--set", f"output_dir={ref_dir}")
    reference = json.loads((ref_dir / "result.json").read_text())
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "confusion_matrix_2clip", "epoch"):
        assert soaked[key] == reference[key], (key, kinds)
    a, b = (checkpoints.saved_module(checkpoints.resolve(d)) for d in (ref_dir, run_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kinds
    assert not (run_dir / lease.FILE).exists()
