"""Several nodes on one machine (slurm/local-cluster/start.sh --nodes N): every node a slurmd (and
an sshd) in its own network, UTS and mount namespace. A run across two nodes through
`sbatch slurm/all_folds.sh`, submitit and `deepspeed --hostfile` equals two ranks on one node; the
15-task grid spreads over three nodes; a node lost mid-run costs neither a fold nor a result."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from mma_dfer.runs import checkpoints
from tests.conftest import ROOT, require, run_train, train_cmd

LOCAL = ROOT / "slurm/local-cluster"
VENV_BIN = Path(sys.executable).parent
# Two-rank runs that must agree: drop-path off (its draws come from per-rank streams), log every step.
RUN_SETS = ["train.epochs=3", "train.max_steps_per_epoch=3", "model.drop_path_rate=0.0", "train.log_every=1"]
COLLECTIVE_TIMEOUT_S = 8  # shorter than SLURM's node check here (SlurmdTimeout=10: down after ~14-20 s)


def set_args(sets):
    return [a for kv in sets for a in ("--set", kv)]


def final_module(run_dir):
    return torch.load(checkpoints.resolve(run_dir) / checkpoints.MODEL_STATES, weights_only=True)["module"]


def assert_same_run(run_dir, reference_dir, atol):
    """Final trainable weights within ``atol`` (0: bit-identical) and the same test metrics."""
    a, b = final_module(run_dir), final_module(reference_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (Path(run_dir), Path(reference_dir)))
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "num_test_clips"):
        assert ra[key] == rb[key], key
    return ra


# -- the cluster ---------------------------------------------------------------------------------

def _cannot_run() -> str:
    if os.geteuid() != 0:
        return "needs root to start the local SLURM and its network namespaces"
    tools = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "/usr/sbin/sshd", "pdsh", "ip", "nsenter")
    missing = [b for b in tools if not shutil.which(b)]
    if missing:
        return f"missing: {missing} (.ci/system-deps.sh installs them)"
    if subprocess.run(["unshare", "--net", "--uts", "--mount", "true"], capture_output=True).returncode != 0:
        return "this machine does not allow network, UTS and mount namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    return ""


def leftovers(state: Path) -> list[str]:
    """Namespaces, interfaces and processes of a multi-node cluster still present."""
    found = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
             if ns.startswith("mma-dfer-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += sorted(set(re.findall(r"\b(mmadfer-[\w-]+)", links)))
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(state) in cmd or f"SLURM_CONF={state}/" in environ:
            found.append(f"pid {proc.name}: {cmd[:120]}")
    return found


class Cluster:
    def __init__(self, state: Path, nodes: list[str]):
        self.state, self.nodes = state, nodes
        self.env = {**os.environ, "SLURM_CONF": str(state / "etc/slurm.conf"), "MMA_DFER_SLURM_STATE": str(state),
                    "DS_ACCELERATOR": "cpu", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}

    def sh(self, *cmd, timeout=120, **kw):
        return subprocess.run([str(c) for c in cmd], env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kw)

    def node(self, action, name, *cmd, timeout=120):
        return self.sh("bash", LOCAL / "node.sh", "--state", self.state, action, name, *cmd, timeout=timeout, cwd=ROOT)

    def node_state(self, name) -> str:
        return self.sh("sinfo", "-h", "-N", "-n", name, "-o", "%T").stdout.split("\n")[0].strip()

    def wait(self, what, predicate, timeout=600, every=0.2):
        end = time.time() + timeout
        while not predicate():
            if time.time() > end:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n"
                                     f"{self.sh('squeue').stdout}\n{self.sh('sinfo', '-N').stdout}")
            time.sleep(every)
        return time.time()

    def watch(self, conditions: dict, required, timeout=120, every=0.2) -> dict:
        """The time each condition first held, polling until the ``required`` ones all have."""
        seen, end = {}, time.time() + timeout
        while not all(name in seen for name in required):
            if time.time() > end:
                raise AssertionError(f"after {timeout} s only {sorted(seen)} of {sorted(conditions)} happened\n"
                                     f"{self.sh('squeue').stdout}\n{self.sh('sinfo', '-N').stdout}")
            for name, condition in conditions.items():
                if name not in seen and condition():
                    seen[name] = time.time()
            time.sleep(every)
        return seen

    def wait_idle(self, timeout=900):
        """Until the queue is empty (every job finished)."""
        self.wait("an empty queue", lambda: not self.sh("squeue", "-h").stdout.strip(), timeout, every=1)

    def wait_nodes_idle(self, timeout=120):
        self.wait("every node idle", lambda: all(self.node_state(n) == "idle" for n in self.nodes), timeout, 0.5)

    def pending(self, job) -> bool:
        return "PENDING" in self.sh("squeue", "-h", "-j", job, "-o", "%T").stdout

    def attempts(self, job) -> list[dict]:
        """Every run of a job, requeued ones included (sacct --duplicates), oldest first."""
        out = self.sh("sacct", "-n", "-X", "-P", "-D", "-j", job, "-o", "JobID,State,NodeList,Start,End").stdout
        rows = [dict(zip(("id", "state", "nodes", "start", "end"), line.split("|"))) for line in out.splitlines()]
        return [r for r in rows if r["id"] == job]

    def sbatch_all_folds(self, runs, folds, resolutions, sets, array, *options, extra_exports=()):
        exports = ",".join(["ALL", "CPU_ONLY=1", f"FOLDS={folds}", f"RESOLUTIONS={resolutions}",
                            "CONFIG=configs/demo.yaml", f"SETS={' '.join(sets)}", f"RUNS_ROOT={runs}",
                            f"MMA_DFER_HOME={ROOT}", f"VENV={VENV_BIN.parent}", *extra_exports])
        proc = self.sh("sbatch", "--parsable", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=3G",
                       f"--array={array}", f"--output={runs}/slurm-%A_%a.out", f"--export={exports}", *options,
                       ROOT / "slurm/all_folds.sh", cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().split(";")[0]


@pytest.fixture(scope="module")
def cluster(request):
    """A local cluster of ``request.param`` nodes (default 2), stopped and checked clean after."""
    require(_cannot_run())
    n = getattr(request, "param", 2)
    state = Path(tempfile.mkdtemp(prefix="mma-dfer-multinode-", dir="/tmp"))  # traversable by munge/mysql
    state.chmod(0o755)
    try:
        proc = subprocess.run(["bash", str(LOCAL / "start.sh"), str(state), "--nodes", str(n)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        names = [f"node{i}" for i in range(1, n + 1)]
        assert f"nodes: {' '.join(names)}" in proc.stdout
        yield Cluster(state, names)
    finally:
        subprocess.run(["bash", str(LOCAL / "stop.sh"), str(state)], capture_output=True, timeout=180)
        left = leftovers(state)
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"stop.sh left these behind: {left}"


@pytest.fixture
def mn(cluster):
    """The cluster, with its queue emptied and every node back up after the test."""
    yield cluster
    cluster.sh("scancel", "--user=root")
    for name in cluster.nodes:
        if cluster.node_state(name).startswith("down"):
            cluster.node("start", name)
    cluster.wait_nodes_idle()


@pytest.fixture(scope="module")
def reference_two_ranks(demo_root, tmp_path_factory):
    """Fold 1 at 32 px with two ranks on one machine (the DeepSpeed launcher), uninterrupted."""
    out = tmp_path_factory.mktemp("reference") / "two-ranks"
    run_train("--config", str(ROOT / "configs/demo.yaml"), "--deepspeed_config", str(ROOT / "ds_configs/cpu_fp32.json"),
              "--set", f"data.root={demo_root}", *set_args(RUN_SETS),
              "--set", f"output_dir={out}", launcher="deepspeed", gpus=2)
    return out


def log_time(line: str) -> float:
    """The time of a trainer log line (``[rank0] 2026-11-27 16:00:24,504 INFO ...``)."""
    stamp = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    return time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) + int(stamp.group(2)) / 1000


def slurm_time(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def resumed_times(log: str) -> tuple[float, float]:
    """When the requeued run logged "resumed from" and its first training step after it."""
    resumed = next(line for line in log.splitlines() if "resumed from" in line)
    after = log[log.index(resumed):]
    first_step = next(line for line in after.splitlines() if re.search(r"INFO epoch \d+ step \d+/", line))
    return log_time(resumed), log_time(first_step)


def report(title: str, t_kill: float, events: dict) -> None:
    timeline = sorted(events.items(), key=lambda kv: kv[1])
    print(f"\n{title}: " + ", ".join(f"{k} +{t - t_kill:.1f} s" for k, t in timeline))


# -- data preparation as an array (issue 19) ------------------------------------------------------------

def test_prepare_array_splits_the_clips_over_the_nodes_and_merges_them(mn, dfew_root, tmp_path):
    """slurm/prepare.sh with 2 tasks: each prepares and packs its piece on its own node, the merge
    job then writes the summary and the store index that one prepare of the whole dataset writes."""
    from mma_dfer.data.prepare import PackOptions, prepare
    from tests.test_packed import clip_bytes

    out, one = tmp_path / "out", tmp_path / "one"
    exports = ",".join(["ALL", "DATASET=dfew", f"RAW={dfew_root}", f"OUT={out}", "WORKERS=1",
                        "PREPARE_ARGS=--pack --pack-shard-mb 0.15", f"MMA_DFER_HOME={ROOT}", f"VENV={VENV_BIN.parent}"])
    proc = mn.sh("sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", "--mem=2G", f"--output={tmp_path}/p-%A_%a.out",
                 f"--export={exports}", ROOT / "slurm/prepare.sh", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    prepare("dfew", dfew_root, one, pack=PackOptions(shard_bytes=int(0.15 * 2**20)), progress=False)
    mn.wait_idle()
    rows = [line.split("|") for line in mn.sh("sacct", "-n", "-X", "-P", "-S", "2000-01-01",
                                               "-o", "JobID,JobName,State,NodeList").stdout.splitlines()]
    tasks = {r[0]: r for r in rows if r[0].startswith(f"{job}_")}
    assert sorted(tasks) == [f"{job}_0", f"{job}_1"] and {r[2] for r in tasks.values()} == {"COMPLETED"}, rows
    assert {r[3] for r in tasks.values()} == set(mn.nodes)  # one piece on each node
    merge = [r for r in rows if r[1] == "mma-dfer-prepare-merge"]
    assert len(merge) == 1 and merge[0][2] == "COMPLETED", rows
    assert "35 packed into" in (out / f"prepare-merge-{job}.out").read_text()
    assert json.loads((out / "prepare_summary.json").read_text()) == json.loads((one / "prepare_summary.json").read_text())
    assert clip_bytes(out) == clip_bytes(one)


# -- item 3: the grid over every node ---------------------------------------------------------------

@pytest.mark.parametrize("cluster", [3], indirect=True)
def test_grid_of_fifteen_tasks_runs_on_every_node_then_aggregates(mn, dfew_root, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    sets = [f"data.root={dfew_root}", "train.epochs=1", "train.max_steps_per_epoch=1", "eval.clips=[1]"]
    job = mn.sbatch_all_folds(runs, "1 2 3 4 5", "32 48 64", sets, "0-14", extra_exports=["OMP_NUM_THREADS=1"])
    mn.wait_idle()
    out = mn.sh("sacct", "-n", "-X", "-P", "-S", "2000-01-01", "-o", "JobID,JobName,State,NodeList,Start,End").stdout
    rows = [line.split("|") for line in out.splitlines()]
    tasks = {r[0]: r for r in rows if r[0].startswith(f"{job}_")}
    assert sorted(tasks) == sorted(f"{job}_{i}" for i in range(15))
    assert {r[2] for r in tasks.values()} == {"COMPLETED"}, tasks
    assert {r[3] for r in tasks.values()} == set(mn.nodes)  # one node per task, every node used
    aggregate = [r for r in rows if r[1] == "mma-dfer-aggregate"]
    assert len(aggregate) == 1 and aggregate[0][2] == "COMPLETED", rows
    assert slurm_time(aggregate[0][4]) >= max(slurm_time(r[5]) for r in tasks.values())
    agg = json.loads((runs / "aggregate.json").read_text())
    assert all(agg["dfew"][res]["complete"] for res in ("32", "48", "64")), agg
    assert "| 64 |" in (runs / f"aggregate-{job}.out").read_text()


# -- item 2: one run across two nodes ---------------------------------------------------------------

def test_sbatch_two_nodes_equals_two_ranks_on_one_node(mn, demo_root, reference_two_ranks, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    job = mn.sbatch_all_folds(runs, "1", "32", [f"data.root={demo_root}", *RUN_SETS], "0",
                              "--nodes=2", "--ntasks-per-node=1")
    mn.wait_idle()
    step = mn.sh("sacct", "-n", "-P", "-j", f"{job}_0.0", "-o", "NodeList,State,NTasks").stdout.split()
    assert step == ["node[1-2]|COMPLETED|2"], step
    log = (runs / f"slurm-{job}_0.out").read_text()
    assert "2 ranks on node[1-2], batch on node1" in log and "world 2 (slurm)" in log, log[-3000:]
    result = assert_same_run(runs / "dfew/res32/fold1", reference_two_ranks, atol=1e-5)
    assert result["world_size"] == 2
    assert json.loads((runs / "aggregate.json").read_text())["dfew"]["32"]["folds"]["1"]


def test_submitit_two_nodes_equals_two_ranks_on_one_node(mn, demo_root, reference_two_ranks, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, ROOT / "launch/submit.py", "--cluster", "slurm", "--dataset", "dfew", "--folds", "1",
           "--resolutions", "32", "--config", "configs/demo.yaml", "--deepspeed_config", "ds_configs/cpu_fp32.json",
           "--nodes", "2", "--gpus-per-node", "0", "--cpus-per-task", "1", "--mem", "3G", "--time", "30",
           "--runs-root", runs, "--set", f"data.root={demo_root}", *set_args(RUN_SETS),
           "--wait"]
    proc = mn.sh(*cmd, cwd=ROOT, timeout=900)
    assert proc.returncode == 0 and " done: UAR " in proc.stdout, proc.stdout + proc.stderr
    job = re.search(r"submitted job (\d+)", proc.stdout).group(1)
    # --wait returns when rank 0's result is written; the step's end reaches the accounting a moment later
    def step():
        return mn.sh("sacct", "-n", "-P", "-j", f"{job}.0", "-o", "NodeList,State,NTasks").stdout.split()
    mn.wait("the step's end in the accounting", lambda: "RUNNING" not in "".join(step()), timeout=60, every=1)
    assert step() == ["node[1-2]|COMPLETED|2"], step()
    result = assert_same_run(runs / "dfew/res32/fold1", reference_two_ranks, atol=1e-5)
    assert result["world_size"] == 2


# -- item 5: deepspeed --hostfile over ssh -----------------------------------------------------------

def test_deepspeed_hostfile_trains_across_two_nodes_over_ssh(mn, demo_root, reference_two_ranks, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=1\nnode2 slots=1\n")
    ds_env = tmp_path / "deepspeed_env"  # what the launcher exports to the other nodes
    ds_env.write_text("DS_ACCELERATOR=cpu\n")
    out = tmp_path / "run"
    # run from node1, as a user logged into it would; --venv_script activates the venv on each node
    cmd = ["env", f"DS_ENV_FILE={ds_env}", VENV_BIN / "deepspeed", "--hostfile", hostfile,
           "--venv_script", VENV_BIN / "activate", ROOT / "launch/train.py",
           "--config", "configs/demo.yaml", "--deepspeed_config", "ds_configs/cpu_fp32.json",
           "--set", f"data.root={demo_root}", *set_args(RUN_SETS), "--set", f"output_dir={out}"]
    proc = mn.node("exec", "node1", *cmd, timeout=900)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    assert "pdsh -S -f 1024 -w node1,node2" in text and "node_rank=1" in text
    assert "Using IP address of 10.219.0.11 for node node1" in text  # the rendezvous: node1, found over ssh
    result = assert_same_run(out, reference_two_ranks, atol=1e-5)
    assert result["world_size"] == 2


# -- item 4: a node lost mid-run ---------------------------------------------------------------------

def test_task_on_a_lost_node_is_requeued_and_resumes_on_another(mn, demo_root, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    sets = [f"data.root={demo_root}", *RUN_SETS]
    job = mn.sbatch_all_folds(runs, "1 2", "32", sets, "0-1")
    run = runs / "dfew/res32/fold1"
    mn.wait("fold 1's first checkpoint", (run / "checkpoints/epoch001" / checkpoints.MARKER).is_file, every=0.05)
    lost = mn.sh("squeue", "-h", "-j", f"{job}_0", "-o", "%N").stdout.strip()
    assert lost in mn.nodes and not (run / "result.json").exists()
    killed = mn.node("kill", lost)
    t_kill = time.time()
    assert killed.returncode == 0, killed.stderr
    # the uninterrupted run to compare with, on the host meanwhile
    reference = tmp_path / "reference"
    ref_cmd = train_cmd("--config", str(ROOT / "configs/demo.yaml"), "--set", f"data.root={demo_root}",
                        *set_args(RUN_SETS), "--set", f"output_dir={reference}")
    ref_proc = subprocess.Popen(ref_cmd, cwd=ROOT, env=mn.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    events = mn.watch({"node down": lambda: mn.node_state(lost).startswith("down"),
                       "requeued": lambda: mn.pending(f"{job}_0")}, required=("node down", "requeued"))
    mn.wait_idle()
    assert ref_proc.wait(timeout=900) == 0, ref_proc.stderr.read()[-3000:]
    attempts = mn.attempts(f"{job}_0")
    assert [a["state"] for a in attempts] == ["NODE_FAIL", "COMPLETED"], attempts
    assert attempts[0]["nodes"] == lost and attempts[1]["nodes"] not in ("", lost), attempts
    events["restarted"] = slurm_time(attempts[1]["start"])
    events["other node free"] = slurm_time(mn.attempts(f"{job}_1")[-1]["end"])  # fold 2 ran there meanwhile
    log = (runs / f"slurm-{job}_0.out").read_text()
    assert "restart 1" in log and "resumed from" in log, log[-3000:]
    events["resumed"], events["first step"] = resumed_times(log)
    report(f"lost {lost} under a one-node task", t_kill, events)
    assert_same_run(run, reference, atol=0)  # bit-identical on CPU fp32
    # no fold lost or duplicated: the aggregation job ran after both tasks and found both folds once
    agg = json.loads((runs / "aggregate.json").read_text())["dfew"]["32"]
    assert agg["complete"] and sorted(agg["folds"]) == ["1", "2"], agg


def two_node_run_at_its_first_checkpoint(mn, demo_root, tmp_path):
    """A fold trained on 2 nodes through all_folds.sh, once its first checkpoint is complete:
    (runs root, job id, run folder, the task's output file)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    sets = [f"data.root={demo_root}", *RUN_SETS, f"train.collective_timeout_s={COLLECTIVE_TIMEOUT_S}"]
    job = mn.sbatch_all_folds(runs, "1", "32", sets, "0", "--nodes=2", "--ntasks-per-node=1")
    run, out_file = runs / "dfew/res32/fold1", runs / f"slurm-{job}_0.out"
    mn.wait("the first checkpoint", (run / "checkpoints/epoch001" / checkpoints.MARKER).is_file, every=0.05)
    assert not (run / "result.json").exists()
    return runs, job, run, out_file


def test_two_node_run_losing_a_node_is_requeued_and_resumes_when_it_is_back(mn, demo_root, reference_two_ranks,
                                                                             tmp_path):
    runs, job, run, out_file = two_node_run_at_its_first_checkpoint(mn, demo_root, tmp_path)
    assert mn.node("kill", "node2").returncode == 0  # the survivor, rank 0, runs the batch script on node1
    t_kill = time.time()
    # Either the survivor's collective times out first (exit 76, all_folds.sh requeues) or SLURM
    # marks node2 down first (it cancels and requeues the job): the survivor never hangs.
    events = mn.watch({"survivor's error": lambda: "error: lost contact" in out_file.read_text(),
                       "node down": lambda: mn.node_state("node2").startswith("down"),
                       "requeued": lambda: mn.pending(f"{job}_0")}, required=("node down", "requeued"))
    time.sleep(3)  # pending, waiting for two nodes: nothing runs while node2 is down
    assert mn.pending(f"{job}_0")
    assert mn.node("start", "node2").returncode == 0
    events["node back"] = time.time()
    mn.wait_idle()
    attempts = mn.attempts(f"{job}_0")  # requeued once: by SLURM (node failure) or by all_folds.sh (exit 76)
    assert len(attempts) == 2 and attempts[0]["state"] in ("NODE_FAIL", "REQUEUED"), attempts
    assert attempts[1]["state"] == "COMPLETED" and all(a["nodes"] == "node[1-2]" for a in attempts), attempts
    events["restarted"] = slurm_time(attempts[1]["start"])
    log = out_file.read_text()
    assert "restart 1" in log and "resumed from" in log, log[-3000:]
    events["resumed"], events["first step"] = resumed_times(log)
    report("lost node2 under a two-node run", t_kill, events)
    assert_same_run(run, reference_two_ranks, atol=1e-5)
    agg = json.loads((runs / "aggregate.json").read_text())["dfew"]["32"]
    assert list(agg["folds"]) == ["1"] and agg["folds"]["1"]["uar"] is not None


def test_a_hung_rank_times_out_and_all_folds_requeues_the_run(mn, demo_root, reference_two_ranks, tmp_path):
    runs, job, run, out_file = two_node_run_at_its_first_checkpoint(mn, demo_root, tmp_path)
    pids = subprocess.run(["ip", "netns", "pids", "mma-dfer-node2"], capture_output=True, text=True).stdout.split()
    rank1 = [p for p in pids if b"launch/train.py" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(rank1) == 1, pids
    os.kill(int(rank1[0]), signal.SIGSTOP)  # hung, its node alive: only the collective timeout notices
    t_stop = time.time()
    events = mn.watch({"survivor's error": lambda: "error: lost contact" in out_file.read_text(),
                       "requeued": lambda: mn.pending(f"{job}_0")}, required=("survivor's error", "requeued"))
    mn.wait_idle()
    attempts = mn.attempts(f"{job}_0")
    assert [a["state"] for a in attempts] == ["REQUEUED", "COMPLETED"], attempts  # requeued by all_folds.sh
    events["restarted"] = slurm_time(attempts[1]["start"])
    log = out_file.read_text()
    assert "task 0: Exited with exit code 76" in log, log[-3000:]  # srun's word on rank 0
    assert "task 0 lost a rank (exit 76); requeueing job" in log, log[-3000:]
    events["resumed"], events["first step"] = resumed_times(log)
    report("a hung rank on node2 under a two-node run", t_stop, events)
    assert_same_run(run, reference_two_ranks, atol=1e-5)


# -- without a cluster -------------------------------------------------------------------------------

def test_slurm_rendezvous_is_the_first_node_of_the_allocation():
    from mma_dfer.training.distributed import detect

    env = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0", "SLURM_STEP_NODELIST": "node[1-2]",
           "SLURM_JOB_ID": "4321", "PATH": os.environ["PATH"], "SLURM_CONF": "/nonexistent"}
    d = detect(env)
    assert (d.rank, d.world_size, d.local_rank, d.master_addr, d.master_port, d.source) == \
        (1, 2, 0, "node1", 10000 + 4321, "slurm")


def test_collective_failures_are_recognised():
    import torch.distributed as dist

    from mma_dfer.training.distributed import is_collective_failure

    assert is_collective_failure(RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
                                              "Timed out waiting 8000ms for recv operation to complete"))
    assert is_collective_failure(RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:538] Read error "
                                              "[10.219.0.12]:1234: Connection reset by peer"))
    assert is_collective_failure(dist.DistNetworkError("connect() timed out"))
    assert not is_collective_failure(RuntimeError("CUDA out of memory"))
    assert not is_collective_failure(ValueError("gloo/transport/"))


def test_collective_timeout_reaches_groups_made_after_init(monkeypatch):
    from torch.distributed import Backend
    from torch.distributed import distributed_c10d as c10d

    from mma_dfer.training.distributed import set_collective_timeout

    monkeypatch.setattr(c10d, "default_pg_timeout", c10d.default_pg_timeout)
    monkeypatch.setattr(c10d, "default_pg_nccl_timeout", c10d.default_pg_nccl_timeout)
    timeout = set_collective_timeout(8)
    assert timeout.total_seconds() == 8
    assert c10d._get_default_timeout(Backend("gloo")) == timeout  # what DeepSpeed's new_group gets
