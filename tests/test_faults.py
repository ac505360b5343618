"""What real clusters do to a run (issue 26): another number of ranks on resume, a second copy of
the run in its folder, a full disk during a checkpoint, a busy rendezvous port. (Many
preemptions of one run on the local SLURM: tests/test_slurm.py.)"""
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

from mma_dfer.runs import checkpoints, lease
from mma_dfer.training import portable
from mma_dfer.training.signals import PREEMPTED_EXIT_CODE
from tests.conftest import ROOT, require, run_train
from tests.fault_plan import signal_at

DEMO = str(ROOT / "configs/demo.yaml")


def snapshot(folder):
    """Every file under ``folder`` with its bytes (a refused run must leave it as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def trained_weights(run_dir):
    return checkpoints.saved_module(checkpoints.resolve(run_dir))


def reseal(tag_dir, **changes):
    from mma_dfer.utils import atomic_write_json

    marker = {k: v for k, v in {**checkpoints.marker(tag_dir), **changes}.items() if v is not None}
    atomic_write_json(tag_dir / checkpoints.MARKER, {**marker, "files": checkpoints.file_table(tag_dir)})


# -- another number of ranks --------------------------------------------------------------------

def short_run(demo_root, ds_json, *extra):
    """Two epochs of three steps, batch 6 (1, 2 and 3 ranks divide it), drop-path off: the result
    on any number of ranks is the same up to the order of the gradient sums."""
    return ["--config", DEMO, "--deepspeed_config", str(ds_json), "--set", f"data.root={demo_root}",
            "--set", "train.epochs=2", "--set", "train.max_steps_per_epoch=3", "--set", "train.batch_size=6",
            "--set", "model.drop_path_rate=0.0", *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args, gpus, env=None, check=True):
    """The deepspeed launcher on ``gpus`` CPU ranks, on a free port (not its default 29500, which
    another launch on this machine may hold)."""
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(gpus), "--master_port",
           str(free_port()), str(ROOT / "launch/train.py"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "DS_ACCELERATOR": "cpu", **(env or {})},
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"training exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def one_rank_reference(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    run_train(*short_run(demo_root, ROOT / "ds_configs/cpu_fp32.json"), "--set", f"output_dir={out}")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2, 3])
def test_a_two_rank_run_continues_on_one_and_on_three_ranks(demo_root, one_rank_reference, tmp_path, stage):
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": stage}}))
    args = short_run(demo_root, ds)
    stopped = launch(*args, "--set", f"output_dir={tmp_path / 'to1'}", gpus=2, env=signal_at(4), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    tag = checkpoints.resolve(tmp_path / "to1")
    assert tag.name == "step0000004" and checkpoints.marker(tag)["world_size"] == 2
    assert portable.FILE in checkpoints.marker(tag)["files"]
    shutil.copytree(tmp_path / "to1", tmp_path / "to3")
    one = run_train(*args, "--set", f"output_dir={tmp_path / 'to1'}")
    three = launch(*args, "--set", f"output_dir={tmp_path / 'to3'}", gpus=3)
    assert "on 1 ranks; it was written by 2" in one.stderr
    assert "on 3 ranks; it was written by 2" in three.stdout + three.stderr
    reference = trained_weights(one_rank_reference)
    ref_result = json.loads((one_rank_reference / "result.json").read_text())
    for run in ("to1", "to3"):
        weights = trained_weights(tmp_path / run)
        assert weights.keys() == reference.keys()
        for k in reference:
            torch.testing.assert_close(weights[k].float(), reference[k].float(), rtol=0, atol=1e-5, msg=k)
        result = json.loads((tmp_path / run / "result.json").read_text())
        assert abs(result["uar"] - ref_result["uar"]) < 1e-6 and result["epoch"] == 2
        assert not (tmp_path / run / lease.FILE).exists()  # released at the end


@pytest.mark.slow
def test_a_checkpoint_without_the_portable_state_continues_on_its_own_ranks_only(demo_root, tmp_path):
    """A checkpoint as 9b81fcc wrote it (no world_size in its marker, no portable_state.pt):
    another number of ranks is refused before anything is written, naming both; the same number
    continues it bit-identically, as before."""
    args = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=1",
            "--set", "train.max_steps_per_epoch=4", "--set", f"output_dir={tmp_path / 'old'}"]
    run_train(*args[:-2], "--set", f"output_dir={tmp_path / 'straight'}")
    stopped = run_train(*args, env=signal_at(2), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    tag = checkpoints.resolve(tmp_path / "old")
    (tag / portable.FILE).unlink()
    reseal(tag, world_size=None)
    # as if two ranks wrote it: a second RNG file
    shutil.copy(tag / "rng_rank0.pt", tag / "rng_rank1.pt")
    reseal(tag)
    before = snapshot(tmp_path / "old")
    refused = run_train(*args, check=False)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "written by 2 ranks and this run has 1" in refused.stderr and "--num_gpus 2" in refused.stderr
    assert snapshot(tmp_path / "old") == before
    (tag / "rng_rank1.pt").unlink()
    reseal(tag)
    assert "resumed from" in run_train(*args).stderr
    a, b = trained_weights(tmp_path / "straight"), trained_weights(tmp_path / "old")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- one writer per run folder ------------------------------------------------------------------

def write_lease(run_dir, **fields):
    now = time.time()
    record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": lease._process_start(os.getpid()),
              "slurm_job_id": None, "started": "2026-01-01T00:00:00Z", "renewed": "2026-01-01T00:00:00Z",
              "renewed_unix": now, "token": "someone", **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / lease.FILE).write_text(json.dumps(record))
    return record


def test_a_second_run_of_a_folder_is_refused_and_writes_nothing(demo_root, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        out = tmp_path / "run"
        write_lease(out, pid=holder.pid, pid_start=lease._process_start(holder.pid), slurm_job_id=None)
        (out / "log.jsonl").write_text('{"step": 1}\n')
        before = snapshot(out)
        proc = run_train("--config", DEMO, "--set", f"data.root={demo_root}", "--set", f"output_dir={out}",
                         check=False)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert f"is in use by another run (host {socket.gethostname()} pid {holder.pid}" in proc.stderr
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()


def _take(run_dir, results):
    try:
        lease.Lease(run_dir).acquire()
        results.put("took")
        time.sleep(3)  # hold it while the other tries
    except lease.LeaseError:
        results.put("refused")


def test_of_two_runs_starting_at_once_one_takes_the_folder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(tmp_path / "run", results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcome = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    assert outcome == ["refused", "took"]


@pytest.mark.parametrize("why", ["dead process", "expired", "own slurm job", "finished slurm job"])
def test_a_stale_lease_is_taken_over_and_logged(tmp_path, monkeypatch, caplog, why):
    run = tmp_path / "run"
    if why == "dead process":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        write_lease(run, pid=gone.pid)
    elif why == "expired":
        write_lease(run, host="node-lost", pid=1, renewed_unix=time.time() - lease.TTL_S - 1)
    elif why == "own slurm job":
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        write_lease(run, host="node-lost", slurm_job_id="4242")
    else:
        monkeypatch.setattr(lease, "_slurm_state", lambda job: "")
        write_lease(run, host="node-lost", slurm_job_id="17")
    with caplog.at_level("WARNING"):
        held = lease.Lease(run).acquire()
    assert "took over the lease" in caplog.text
    assert json.loads((run / lease.FILE).read_text())["token"] == held.token
    held.release()
    assert not (run / lease.FILE).exists()


def test_a_live_lease_is_kept(tmp_path, monkeypatch):
    write_lease(tmp_path / "run")  # this very process, renewed just now
    with pytest.raises(lease.LeaseError, match="in use by another run"):
        lease.Lease(tmp_path / "run").acquire()
    monkeypatch.setattr(lease, "_slurm_state", lambda job: "RUNNING")
    write_lease(tmp_path / "other", host="node2", slurm_job_id="17")
    with pytest.raises(lease.LeaseError, match="SLURM job 17"):
        lease.Lease(tmp_path / "other").acquire()


# -- a full disk ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    require("" if os.geteuid() == 0 and shutil.which("mount") else "needs root to mount a tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_stops_the_run_and_it_resumes_after(demo_root, small_disk):
    out = small_disk / "run"
    args = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=2",
            "--set", "train.max_steps_per_epoch=3", "--set", f"output_dir={out}"]
    stopped = run_train(*args, env=signal_at(2), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    first = checkpoints.resolve(out)
    # leave less room than a checkpoint takes (~0.5 MB here), enough for the log lines
    free = shutil.disk_usage(small_disk).f_bavail if hasattr(shutil.disk_usage(small_disk), "f_bavail") else \
        shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - 256 * 1024))
    full = run_train(*args, check=False)
    assert full.returncode == 2, full.stderr[-3000:]
    assert "no space left on device" in full.stderr and str(out / "checkpoints") in full.stderr
    assert "Traceback" not in full.stderr
    assert checkpoints.resolve(out) == first
    checkpoints.verify(first)  # the previous checkpoint is intact
    assert not (out / "checkpoints/epoch001").exists()  # the half-written one is gone, never picked
    filler.unlink()
    resumed = run_train(*args)
    assert "resumed from" in resumed.stderr and json.loads((out / "result.json").read_text())["epoch"] == 2


# -- a busy port ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["launcher environment", "deepspeed --master_port"])
def test_a_busy_rendezvous_port_is_named_with_exit_2(demo_root, tmp_path, how):
    args = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", f"output_dir={tmp_path / 'r'}"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if how == "launcher environment":
            proc = run_train(*args, env={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                                         "MASTER_PORT": str(port)}, check=False)
        else:
            proc = subprocess.run([sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "1",
                                   "--master_port", str(port), str(ROOT / "launch/train.py"), *args], cwd=ROOT,
                                  env={**os.environ, "DS_ACCELERATOR": "cpu"}, capture_output=True, text=True,
                                  timeout=900)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"port {port} on 127.0.0.1 is in use" in proc.stderr
    assert "--master_port" in proc.stderr and "MASTER_PORT" in proc.stderr
    assert "lost contact" not in proc.stderr
    assert not (tmp_path / "r").exists()  # nothing written
