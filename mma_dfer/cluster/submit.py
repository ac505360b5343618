"""The fold x resolution fan-out (or a sweep's runs) through submitit (SLURM job arrays, or local/debug executors).

Each job runs :class:`TrainJob`, a picklable callable: it trains with ``--resume auto``
semantics, so a run whose folder holds this config's finished result is skipped, and one whose
folder holds another config's run fails with the fields that differ. The same check runs before
submission, so that neither is submitted. On SLURM's warning signal
(submitit's USR2, or USR1/TERM) the trainer writes a step checkpoint at the next step boundary
and stops; the signal is then handed back to submitit, whose handler calls
:meth:`TrainJob.checkpoint` and requeues the job, which resumes from that checkpoint.
Submitted jobs are written to a manifest so that ``--status`` can report on them later.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import submitit

from mma_dfer.config import ConfigError, add_set_flag, load_config
from mma_dfer.data.annotations import AnnotationError
from mma_dfer.datasets import NAMES, num_folds
from mma_dfer.experiments.results import AggregateError, read_result
from mma_dfer.experiments.sweep import SweepError, expand, load_sweep, restrict, seed_folder, write_definition
from mma_dfer.resources import paper_config
from mma_dfer.runs.folder import claim
from mma_dfer.runs.identity import IdentityError
from mma_dfer.safe_files import CheckpointError
from mma_dfer.training import TrainingError
from mma_dfer.training.signals import Preempted
from mma_dfer.utils import atomic_write_json, parse_int_list

MANIFEST = "submit_manifest.json"


def run_dir(runs_root: Path, dataset: str, resolution: int, fold: int) -> Path:
    return runs_root / dataset / f"res{resolution}" / f"fold{fold}"


def valid_result(path: Path) -> Optional[dict]:
    """The result of a finished run, or None when absent or unreadable."""
    try:
        return read_result(path) if path.is_file() else None
    except AggregateError:
        return None


class TrainJob:
    """One (dataset, fold, resolution) training run; submitit calls it and checkpoints it.

    Args:
        config: experiment YAML.
        deepspeed_config: DeepSpeed JSON.
        overrides: ``key=value`` overrides (fold, resolution and output_dir included).
        output_dir: the run folder (where ``result.json`` and checkpoints go).
    """

    def __init__(self, config: str, deepspeed_config: str, overrides: list[str], output_dir: str):
        self.config, self.deepspeed_config = config, deepspeed_config
        self.overrides, self.output_dir = list(overrides), output_dir

    def make_config(self):
        return load_config(self.config, [*self.overrides, f"output_dir={self.output_dir}"])

    def __call__(self) -> dict:
        from mma_dfer.training.trainer import run  # lazy: submit --help and --status import no torch

        _export_distributed_env()
        cfg = self.make_config()
        try:
            return run(cfg, self.deepspeed_config, resume="auto")
        except Preempted as e:
            print(f"{self.output_dir}: {e}; handing signal {e.signum} to submitit for requeue", flush=True)
            signal.raise_signal(e.signum)  # submitit's handler: checkpoint() then requeue and exit
            raise

    def checkpoint(self, *args, **kwargs):
        """Requeue the same run; it resumes from its newest complete checkpoint."""
        return submitit.helpers.DelayedSubmission(TrainJob(self.config, self.deepspeed_config, self.overrides,
                                                           self.output_dir))


def _export_distributed_env() -> None:
    """Inside a submitit job: RANK/WORLD_SIZE/... from the job environment (multi-task jobs)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return  # not inside a submitit job (debug executor runs in the caller)
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    else:
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(var, None)


# -- one compiled-artifact cache for every job (issue 21) ---------------------------------------------
COMPILE_CACHE = ".compile-cache"


def share_compile_cache(runs_root: Path) -> str:
    """Point inductor's cache (its FX graphs, AOTAutograd entries and, unless TRITON_CACHE_DIR
    says otherwise, the Triton kernels) at ``<runs root>/.compile-cache`` unless the user set
    one: the jobs inherit this environment (sbatch exports it; the local and debug executors run
    with it), so the first job of a geometry pays the compilation and the others load it."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(runs_root.resolve() / COMPILE_CACHE))
# ------------------------------------------------------------------------------------------------------


def make_executor(args, log_dir: Path):
    ex = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster=args.cluster,
                               slurm_max_num_timeout=args.max_requeue)
    gpus = args.gpus_per_node
    name = f"mma-dfer-{Path(args.sweep).stem if args.sweep else args.dataset}"
    params = dict(name=name, timeout_min=args.time, nodes=args.nodes,
                  tasks_per_node=max(gpus, 1), cpus_per_task=args.cpus_per_task)
    if gpus > 0:
        params["gpus_per_node"] = gpus
    if ex.cluster == "slurm":
        params.update(slurm_signal_delay_s=args.signal_delay)
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.account:
            params["slurm_account"] = args.account
        if args.mem:
            params["slurm_mem"] = args.mem
        if args.array_parallelism:
            params["slurm_array_parallelism"] = args.array_parallelism
    ex.update_parameters(**params)
    return ex


def protocol_folds(config: str, overrides: list[str]) -> list[int]:
    """The folds 1..K of the dataset the config and overrides describe (mma_dfer.datasets)."""
    return list(range(1, num_folds(load_config(config, overrides).data) + 1))


def _grid(args, runs_root: Path) -> list[tuple[dict, TrainJob]]:
    """The fold x resolution grid of one dataset (x ``--seeds``: each run once per seed, into
    ``fold<k>/seed<s>/``): (manifest fields, job) per run."""
    planned = []
    for res in parse_int_list(args.resolutions or "112,160,224"):
        config = args.config or paper_config(args.dataset, res)
        base = [f"data.dataset={args.dataset}", f"data.resolution={res}", *args.overrides]
        for fold in parse_int_list(args.folds) if args.folds else protocol_folds(config, base):
            for seed in parse_int_list(args.seeds) if args.seeds else [None]:
                out = seed_folder(run_dir(runs_root, args.dataset, res, fold), seed)
                overrides = [f"data.dataset={args.dataset}", f"data.fold={fold}", f"data.resolution={res}",
                             *([f"train.seed={seed}"] if seed is not None else []), *args.overrides]
                planned.append(({"dataset": args.dataset, "resolution": res, "fold": fold,
                                 **({"seed": seed} if seed is not None else {})},
                                TrainJob(config, args.deepspeed_config, overrides, str(out))))
    return planned


def _sweep(args, runs_root: Path) -> list[tuple[dict, TrainJob]]:
    """Every run of a sweep file (variants x datasets x resolutions x folds); its definition is
    copied next to the runs for the report. ``--folds``/``--resolutions`` given on the command
    line replace the sweep's grid, ``--variants`` picks a subset."""
    sweep = load_sweep(args.sweep)
    variants = [v for v in (args.variants or "").split(",") if v]
    sweep = restrict(sweep, parse_int_list(args.folds) if args.folds else None,
                     parse_int_list(args.resolutions) if args.resolutions else None,
                     seeds=parse_int_list(args.seeds) if args.seeds else None)
    runs = expand(sweep, runs_root, args.config, args.overrides, variants)
    print(f"sweep {sweep.name}: {len(runs)} runs; definition {write_definition(sweep, runs_root)}")
    return [({"sweep": r.sweep, "variant": r.variant, "dataset": r.dataset, "resolution": r.resolution,
              "fold": r.fold, **({"seed": r.seed} if r.seed is not None else {})},
             TrainJob(r.config, args.deepspeed_config, r.overrides, r.output_dir)) for r in runs]


def _describe(meta: dict) -> str:
    where = f"{meta['sweep']}/{meta['variant']} " if "sweep" in meta else ""
    return f"{where}{meta['dataset']} res{meta['resolution']} fold{meta['fold']}" + (
        f" seed{meta['seed']}" if "seed" in meta else "")


def submit(args) -> int:
    try:
        parse_int_list(args.seeds or "1")
    except ValueError:
        print(f"error: --seeds {args.seeds!r} is not a list of integers (1,2,3 or 1-3)", file=sys.stderr)
        return 2
    runs_root = Path(args.runs_root)
    runs_root.mkdir(parents=True, exist_ok=True)
    log_dir = runs_root / "submitit_logs"
    jobs, entries = [], []
    try:  # a bad sweep file; without one, the dataset's folds could not be read off the config
        planned = _sweep(args, runs_root) if args.sweep else _grid(args, runs_root)
    except (SweepError,) if args.sweep else run_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo, refused = [], 0
    world = max(args.gpus_per_node, 1) * args.nodes
    for meta, job in planned:
        try:
            done = finished(job, world)
        except run_errors() as e:  # this run's problem is reported, the others still submitted
            refused += 1
            print(f"error: {_describe(meta)} not submitted: {e}", file=sys.stderr)
            continue
        if done is not None:
            print(f"skip {_describe(meta)}: {Path(job.output_dir) / 'result.json'} holds this config's result")
            continue
        todo.append((meta, job))
    if not todo:
        print("nothing to submit: every run has its config's result" if not refused else "nothing submitted")
        return 2 if refused else 0
    share_compile_cache(runs_root)
    ex = make_executor(args, log_dir)
    with ex.batch():
        for _, job in todo:
            jobs.append(ex.submit(job))
    for (meta, job_fn), job in zip(todo, jobs):
        entry = {"job_id": str(job.job_id), **meta, "output_dir": job_fn.output_dir, "stdout": str(job.paths.stdout),
                 "stderr": str(job.paths.stderr), "cluster": ex.cluster, "folder": str(job.paths.folder),
                 "submitted": time.time()}
        entries.append(entry)
        print(f"submitted job {entry['job_id']}: {_describe(meta)} -> {entry['output_dir']} "
              f"(logs {entry['stdout']})")
    manifest = runs_root / MANIFEST
    old = json.loads(manifest.read_text()) if manifest.is_file() else []
    atomic_write_json(manifest, old + entries)
    print(f"manifest: {manifest}")
    if refused:
        print(f"{refused} run(s) not submitted (above)", file=sys.stderr)
        return 2
    return wait_for(entries, jobs) if args.wait or ex.cluster == "debug" else 0


def wait_for(entries: list[dict], jobs: list) -> int:
    """Wait for every job and print its result; 1 when any failed."""
    failed = 0
    for entry, job in zip(entries, jobs):
        try:
            r = job.results()[0]  # rank 0's; a job of several tasks (nodes) returns one per task
            print(f"job {entry['job_id']} done: UAR {r['uar']:.2f} WAR {r['war']:.2f}")
        except Exception as e:  # a job's failure is reported, the others still counted
            failed += 1
            print(f"job {entry['job_id']} FAILED: {str(e).splitlines()[-1] if str(e) else type(e).__name__}")
    return 1 if failed else 0


def finished(job: TrainJob, world: int) -> Optional[dict]:
    """The finished result of ``job``'s config in its run folder, or None when it is still to run;
    an :class:`~mma_dfer.runs.identity.IdentityError` when the folder holds another config's run."""
    from mma_dfer.training.trainer import planned_identity  # lazy: submit --help and --status import no torch

    identity, _ = planned_identity(job.make_config(), job.deepspeed_config, world)
    return claim(Path(job.output_dir), identity, "auto")


def run_errors() -> tuple:
    """The exceptions that are a problem of one run's config, data or folder (named in their
    message), not a bug."""

    return ConfigError, AnnotationError, TrainingError, IdentityError, CheckpointError


def job_state(entry: dict) -> str:
    if valid_result(Path(entry["output_dir"]) / "result.json") is not None:
        return "COMPLETED (result.json)"
    if entry["cluster"] == "slurm":
        job = submitit.SlurmJob(folder=Path(entry["folder"]).parent / "%j", job_id=entry["job_id"])
        return job.state
    return "UNKNOWN (no result.json; local jobs end with the submitting process)"


def status(args) -> int:
    manifest = Path(args.runs_root) / MANIFEST
    if not manifest.is_file():
        print(f"no manifest at {manifest}; submit first", file=sys.stderr)
        return 2
    entries = json.loads(manifest.read_text())
    for e in entries:
        print(f"{e['job_id']:>14}  {_describe(e)}  {job_state(e):<26} {e['stdout']}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=NAMES, default="dfew", help="without --sweep (default dfew)")
    p.add_argument("--sweep", help="a sweep file or a shipped sweep's name (table4): its variants x datasets x "
                   "resolutions x folds, into <runs-root>/<sweep>/<variant>/<dataset>/res<R>/fold<k>/")
    p.add_argument("--variants", help="with --sweep: comma-separated subset of its variants")
    p.add_argument("--folds", help="default: the dataset's protocol, 1..K (with --sweep: the sweep's)")
    p.add_argument("--resolutions", help="default 112,160,224 (with --sweep: the sweep's)")
    p.add_argument("--seeds", help="training seeds, e.g. 1,2,3: every run once per seed (train.seed), into "
                   "fold<k>/seed<s>/ (default: the config's seed; with --sweep: the sweep's)")
    p.add_argument("--config", help="one YAML for every job (default: the shipped <dataset>_<resolution>, else "
                   "paper; or the sweep's)")
    p.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config",
                   default="zero0_bf16", help="a file or a shipped name (default zero0_bf16: one GPU per run needs "
                   "no ZeRO)")
    add_set_flag(p)
    p.add_argument("--runs-root", default="runs", help="where the run folders go (default runs)")
    p.add_argument("--cluster", choices=("slurm", "local", "debug"), default=None,
                   help="default: SLURM when available, else local")
    p.add_argument("--nodes", type=int, default=1, help="nodes per job")
    p.add_argument("--gpus-per-node", type=int, default=1, help="0: CPU (one task per node)")
    p.add_argument("--cpus-per-task", type=int, default=8, help="CPU cores per task (its data loaders)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--mem", help="e.g. 64G")
    p.add_argument("--time", type=int, default=12 * 60, help="minutes per job")
    p.add_argument("--signal-delay", type=int, default=120, help="seconds of warning before the time limit")
    p.add_argument("--max-requeue", type=int, default=10, help="time-outs a job may be requeued after")
    p.add_argument("--array-parallelism", type=int, default=0, help="jobs running at once (0: no limit)")
    p.add_argument("--wait", action="store_true", help="wait for the jobs and print their results")
    p.add_argument("--status", action="store_true", help="report the state of the jobs in the manifest")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="submit", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def run(args) -> int:
    return status(args) if args.status else submit(args)


def main(argv=None) -> int:
    return run(parser().parse_args(argv))
