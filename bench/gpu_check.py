"""The one-call GPU check of the speed goals (issue 11), most important first, inside a time
budget: each phase runs only while enough time is left, and the goals table is rewritten after
every phase, so a cut-off run still leaves its numbers.

    python bench/gpu_check.py --out DIR [--budget 470] [--phases b8,graphs,...] [--rehearse]

Files (at most 8, as the device tool returns): goals.md (goal, target, measured, PASS/FAIL),
steps.md (every step-benchmark row with its per-step profile line), e2e.md (the training run's
own log, its rate against the step benchmark and what the rest of the epoch costs),
numerics.md, levers.md, data_pipeline.md, results.json (raw numbers); the shell wrapper adds
gpu_check.log. Phases (``--phases``, default all, in this order; ``phases()`` says what each
runs): b8, graphs, b32, e2e, numerics, zero2, 224, fp16, 112, eager, reference, levers, data.
One budget of 470 s reaches about the numerics (each compiled geometry or precision costs
70-90 s of compilation on an H200); the rest in a second call on the same warm machine, e.g.
``--phases zero2,224 --budget 300``. ``--rehearse`` runs the phases at toy sizes on the CPU
(torch.compile with the aot_eager backend there: inductor's C++ build of two ViT-Bs takes many
minutes on two cores).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import train_step as ts  # noqa: E402  (after the path set-up)
from mma_dfer.utils import atomic_write_json, atomic_write_text  # noqa: E402

GOALS = [  # (goal, target clips/s or ratio, how it is read off the rows)
    ("1. batch 8, zero0_bf16.json", 350, ("deepspeed zero0_bf16.json", 160, 8, "bf16")),
    ("1. batch 8, zero2_bf16.json", 350, ("deepspeed zero2_bf16.json", 160, 8, "bf16")),
    ("2. batch 32, zero0_bf16.json", 550, ("deepspeed zero0_bf16.json", 160, 32, "bf16")),
    ("2. batch 32, zero2_bf16.json", 550, ("deepspeed zero2_bf16.json", 160, 32, "bf16")),
    ("3. DeepSpeed/plain, batch 8 (zero0)", 0.97, ("ratio", 160, 8, "bf16")),
    ("3. DeepSpeed/plain, batch 32 (zero0)", 0.97, ("ratio", 160, 32, "bf16")),
    ("4. 224 px, batch 8, zero0_bf16.json", 200, ("deepspeed zero0_bf16.json", 224, 8, "bf16")),
    ("4. 112 px, batch 8, zero0_bf16.json", None, ("deepspeed zero0_bf16.json", 112, 8, "bf16")),
    ("4. fp16 batch 8, zero0_fp16.json", 350, ("deepspeed zero0_fp16.json", 160, 8, "fp16")),
    ("4. fp16 batch 8, zero2_fp16.json", 350, ("deepspeed zero2_fp16.json", 160, 8, "fp16")),
    ("4. fp16 DeepSpeed/plain, batch 8 (zero0)", 0.97, ("ratio", 160, 8, "fp16")),
]


class Check:
    def __init__(self, out: Path, budget: float, rehearse: bool):
        self.out, self.budget, self.rehearse = out, budget, rehearse
        self.start = time.time()
        self.rows: list[dict] = []
        self.e2e: dict = {}
        self.numerics: str = ""
        self.skipped: list[str] = []
        import torch

        self.cuda = torch.cuda.is_available()
        # toy sizes for the CPU rehearsal: every phase, same code, seconds each
        self.size = ({"frames": 2, "steps": 1, "warmup": 1, "res": {160: 112, 224: 112, 112: 112}, "batch": {8: 1, 32: 2}}
                     if rehearse else {"frames": 16, "steps": 20, "warmup": 5, "res": {160: 160, 224: 224, 112: 112},
                                       "batch": {8: 8, 32: 32}})
        self.work: Path | None = None
        self.data_proc = None

    def start_data(self) -> None:
        """The end-to-end run's dataset is written while the step benchmark runs, at the lowest
        CPU priority, with at most half the cores (the benchmark's host thread keeps its own)."""
        self.work = Path(tempfile.mkdtemp(prefix="mma-dfer-e2e-"))
        self.data_proc = subprocess.Popen(
            ["nice", "-n", "19", sys.executable, __file__, "--make-e2e-data", str(self.work)]
            + (["--rehearse"] if self.rehearse else []),
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.work / "data.log", "w"))

    def left(self) -> float:
        return self.budget - (time.time() - self.start)

    # -- the step benchmark -----------------------------------------------------------------
    def spec(self, engine: str, res: int, batch: int, precision: str, compile_mode: str, ds_config: str = "",
             profile: bool = False) -> dict:
        s = self.size
        spec = dict(res=s["res"][res], frames=s["frames"], batch=s["batch"][batch], precision=precision, ckpt=False,
                    fused=True, steps=s["steps"], warmup=s["warmup"], compile=compile_mode, profile=profile,
                    engine=engine, nominal=[res, batch], label=engine + (f" {ds_config}" if ds_config else "")
                    + ts.suffix(compile_mode), ds_config=ds_config,
                    compile_backend="aot_eager" if self.rehearse else "inductor")
        if self.rehearse:  # the tiny model: bf16 matmuls are emulated (slow) on most CPUs
            spec["config"] = str(ROOT / "configs/tiny.yaml")
        if engine == "reference":
            spec["label"] = "reference (timm)" + ts.suffix(compile_mode)
        return spec

    def compiled(self) -> str:
        return "default"  # what train.compile=auto gives on a GPU

    def steps(self, name: str, specs: list[dict], need: float) -> None:
        """Run one group of step-benchmark rows (one process) when ``need`` seconds are left."""
        if self.left() < need:
            self.skipped.append(f"{name} (needs ~{need:.0f} s, {self.left():.0f} s left)")
            return
        t0 = time.time()
        for r in ts.run_group(specs, timeout=max(self.left(), 30)):
            self.rows.append(r)
            print(ts.row(r) + (f"\n  {ts.profile_line(r)}" if r.get("profile") else ""), flush=True)
        print(f"[{name}: {time.time() - t0:.0f} s, {self.left():.0f} s left]", flush=True)
        self.write()

    # -- the end-to-end run --------------------------------------------------------------------
    def end_to_end(self, need: float) -> None:
        """`deepspeed launch/train.py` on a generated dataset (224-px frames, enough clips for 200+
        steps of 8), pre-decoded cache, augmentation on the device, loader workers; its own log's
        clips/s against the step benchmark's at the same batch."""
        if self.left() < need:
            self.skipped.append(f"end-to-end run (needs ~{need:.0f} s, {self.left():.0f} s left)")
            return
        t0 = time.time()
        try:
            self.data_proc.wait(timeout=max(self.left() - 60, 1))
        except subprocess.TimeoutExpired:
            self.data_proc.kill()
        if self.data_proc.returncode != 0 or not (self.work / "data.json").is_file():
            self.e2e = {"returncode": "dataset not ready", "wall_s": time.time() - t0}
            self.skipped.append("end-to-end run (its dataset was not ready)")
            return
        made = {**json.loads((self.work / "data.json").read_text()), "wait_s": time.time() - t0}
        root, workers = Path(made["root"]), made["workers"]
        res, batch = self.size["res"][160], self.size["batch"][8]
        sets = [f"data.root={root}", "data.dataset=dfew", f"data.resolution={res}", "data.source=frames",
                f"data.cache_dir={root / 'cache'}", "data.gpu_augment=true", f"data.num_workers={min(8, workers)}",
                "train.epochs=1", f"train.batch_size={batch}", "train.log_every=25", "eval.clips=[1]",
                f"output_dir={self.work / 'run'}"]
        if self.rehearse:
            sets += ["train.log_every=2", "train.compile=default", "train.compile_backend=aot_eager",
                     "data.num_frames=2", "data.num_workers=2"]
        ds = "zero0_bf16.json"
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "1", str(ROOT / "launch/train.py"),
               "--config", str(ROOT / "configs/demo.yaml" if self.rehearse else ROOT / "configs/dfew_160.yaml"),
               "--deepspeed_config", str(ROOT / "ds_configs" / ds), "--resume", "never"]
        if not self.rehearse:
            sets += ["model.video_checkpoint=null", "model.audio_checkpoint=null"]  # no pretrained files here
        for kv in sets:
            cmd += ["--set", kv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(self.left(), 60))
        log = proc.stdout + proc.stderr
        self.e2e = {"returncode": proc.returncode, **made, "wall_s": time.time() - t0, "ds_config": ds, "batch": batch,
                    **parse_train_log(log), "log_tail": "\n".join(ln for ln in log.splitlines() if "[rank0]" in ln or "rror" in ln)[-6000:]}
        self.close()
        print(f"[end-to-end: rc {proc.returncode}, {self.e2e.get('rate_median', 'n/a')} clips/s in the log, "
              f"{time.time() - t0:.0f} s, {self.left():.0f} s left]", flush=True)
        self.write()

    def close(self) -> None:
        """Stop the dataset writer if it still runs; remove the end-to-end run's folder."""
        if self.data_proc is not None and self.data_proc.poll() is None:
            self.data_proc.kill()
            self.data_proc.wait()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- other phases ----------------------------------------------------------------------------
    def run_script(self, name: str, cmd: list[str], need: float, dest: str) -> str:
        if self.left() < need:
            self.skipped.append(f"{name} (needs ~{need:.0f} s, {self.left():.0f} s left)")
            return ""
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, *cmd, "--markdown", str(self.out / dest)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=max(self.left(), 30))
            text = proc.stdout[-3000:] + (proc.stderr[-1500:] if proc.returncode else "")
        except subprocess.TimeoutExpired:
            text = f"{name}: timed out"
        print(text + f"\n[{name}: {time.time() - t0:.0f} s, {self.left():.0f} s left]", flush=True)
        return text

    # -- output ------------------------------------------------------------------------------------
    def find(self, label: str, res: int, batch: int, precision: str) -> dict | None:
        for r in self.rows:
            if "error" not in r and r["nominal"] == [res, batch] and r["precision"] == precision and \
                    r["label"] == label + ts.suffix(self.compiled()):
                return r
        return None

    def measured(self, how) -> float | None:
        label, res, batch, prec = how
        if label == "ratio":
            ds = self.find(f"deepspeed zero0_{prec}.json", res, batch, prec)
            plain = self.find("plain", res, batch, prec)
            return ds["clips_per_s"] / plain["clips_per_s"] if ds and plain else None
        r = self.find(label, res, batch, prec)
        return r["clips_per_s"] if r else None

    def goals_table(self) -> str:
        lines = ["| goal | target | measured | |", "|---|---|---|---|"]
        for goal, target, how in GOALS:
            v = self.measured(how)
            shown = "not run" if v is None else (f"{v:.3f}" if how[0] == "ratio" else f"{v:.1f} clips/s")
            verdict = "-" if v is None or target is None else ("PASS" if v >= target else "FAIL")
            tgt = "measured" if target is None else (f">= {target}" if how[0] == "ratio" else f">= {target} clips/s")
            lines.append(f"| {goal} | {tgt} | {shown} | {verdict} |")
        e = self.e2e
        bench = self.find("deepspeed zero0_bf16.json", 160, 8, "bf16")
        if e.get("rate_median") and bench:
            ratio = e["rate_median"] / bench["clips_per_s"]
            lines.append(f"| 5. end to end / step benchmark (batch 8, zero0) | >= 0.90 | {ratio:.3f} "
                         f"({e['rate_median']:.1f} / {bench['clips_per_s']:.1f}) | {'PASS' if ratio >= 0.9 else 'FAIL'} |")
        else:
            lines.append("| 5. end to end / step benchmark (batch 8, zero0) | >= 0.90 | not run | - |")
        verdicts = re.findall(r"^\| (fp32 compiled|bf16 eager|bf16 compiled) \|.*\| (PASS|FAIL) \|$", self.numerics, re.M)
        lines.append(f"| 6. same function (bench/numerics.py) | bf16 within 1e-2 of fp32 eager | "
                     f"{', '.join(f'{n}: {v}' for n, v in verdicts) or 'not run'} | "
                     f"{('PASS' if all(v == 'PASS' for _, v in verdicts) else 'FAIL') if verdicts else '-'} |")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        import torch

        device = torch.cuda.get_device_name() if self.cuda else "cpu (rehearsal: toy sizes, the numbers mean nothing)"
        head = (f"device: {device}; torch {torch.__version__}; {time.time() - self.start:.0f} s of a {self.budget:.0f} s "
                f"budget\n\n")
        skipped = "".join(f"- skipped: {s}\n" for s in self.skipped)
        atomic_write_text(self.out / "goals.md", head + self.goals_table() + ("\n" + skipped if skipped else ""))
        atomic_write_text(self.out / "steps.md", head + ts.table(self.rows))
        if "ds_config" in self.e2e:
            atomic_write_text(self.out / "e2e.md", head + e2e_text(self.e2e))
        atomic_write_json(self.out / "results.json", {"rows": self.rows, "e2e": self.e2e, "skipped": self.skipped})


def make_e2e_data(work: Path, rehearse: bool) -> None:
    """The end-to-end run's dataset: generated DFEW (224-px frames; 290 clips per class: 1624
    training clips in fold 1, 203 steps of 8), decoded into the cache; timings in data.json."""
    from mma_dfer.config import load_config
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.prepare import fill_cache
    from mma_dfer.data.synthetic import make_dataset

    workers = max(1, (os.cpu_count() or 2) // 2)
    t0 = time.time()
    root = make_dataset("dfew", work / "dfew", clips_per_class=3 if rehearse else 290, seed=0, size=224,
                        min_frames=16, max_frames=24, workers=workers)  # the loader reads 16 frames a clip
    t_data = time.time() - t0
    cfg = load_config(None, ["data.dataset=dfew", f"data.root={root}"])
    samples = read_split(cfg.data, "train") + read_split(cfg.data, "test")
    fill_cache("dfew", root, samples, "none", workers=workers)
    atomic_write_json(work / "data.json", {"root": str(root), "workers": workers,
                                           "generate_s": t_data, "cache_s": time.time() - t0 - t_data,
                                           "train_clips": len(read_split(cfg.data, "train"))})


def parse_train_log(log: str) -> dict:
    """The window rates the trainer logs (clips/s since its previous line; the first window
    includes compilation, so it is left out) and the times of the rest of the epoch."""
    stamp = r"\[rank0\] (\d+-\d+-\d+ \d+:\d+:\d+,\d+)"
    rates = [float(m) for m in re.findall(r"samples_per_s=([\d.e+]+)", log)]

    def when(pattern):
        import datetime

        m = re.findall(stamp + r" INFO " + pattern, log)
        return datetime.datetime.strptime(m[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None
    last_step, saved, done = when(r"epoch \d+ step"), when(r"saved checkpoint"), when(r"fold \d+ res")
    out = {"rates": rates, "rate_median": statistics.median(rates[1:]) if len(rates) > 1 else None}
    if last_step and saved:
        out["checkpoint_s"] = saved - last_step
    if saved and done:
        out["evaluation_s"] = done - saved
    return out


def e2e_text(e: dict) -> str:
    rates = ", ".join(f"{r:.0f}" for r in e.get("rates", []))
    return (f"`deepspeed launch/train.py` ({e['ds_config']}, batch {e['batch']}): exit code {e['returncode']}\n\n"
            f"- dataset (written while the step benchmark ran): generated in {e['generate_s']:.0f} s, cached in "
            f"{e['cache_s']:.0f} s with {e['workers']} processes; {e['train_clips']} training clips; the run waited "
            f"{e['wait_s']:.0f} s for it\n"
            f"- clips/s per log window: {rates or 'none'} (the first includes compilation)\n"
            f"- median after the first: {e.get('rate_median')}\n"
            f"- after the last step: checkpoint {e.get('checkpoint_s', 'n/a')} s, then evaluation "
            f"{e.get('evaluation_s', 'n/a')} s\n- whole phase: {e['wall_s']:.0f} s\n\n```\n{e['log_tail']}\n```\n")


def phases(c: Check, rehearse: bool) -> dict:
    """Every phase by name, most important first (what the first run of this check, on an H200 at
    fca570c, left unmeasured or showed to matter): the goals at batch 8 and 32 with zero0, CUDA graphs (the
    lever for the host-bound batch 8), the end-to-end run, the numerics; then ZeRO-2 (its own
    compilation: the flat parameter buffer), 224 px, fp16, 112 px; then the anchors and levers."""
    mode, bf, fp = c.compiled(), "bf16", "fp16"
    step = c.spec
    numerics = ["bench/numerics.py", "--batch", "2", "--variants", "bf16 eager,bf16 compiled"] + (
        ["--config", "configs/tiny.yaml", "--resolution", "32", "--frames", "8", "--backend", "aot_eager"]
        if rehearse else [])

    def run_numerics():
        if c.run_script("numerics", numerics, need=120, dest="numerics.md"):
            c.numerics = (c.out / "numerics.md").read_text() if (c.out / "numerics.md").is_file() else ""
        c.write()
    size = ["--frames", "2", "--batch", "1", "--steps", "1", "--warmup", "1", "--resolutions", "112"] if rehearse \
        else ["--frames", "16", "--batch", "8", "--steps", "10", "--warmup", "3", "--resolutions", "160"]
    return {
        "b8": lambda: c.steps("batch 8, bf16", [step("plain", 160, 8, bf, mode, profile=True),
                                                step("deepspeed", 160, 8, bf, mode, "zero0_bf16.json", profile=True)],
                              need=100),
        "graphs": lambda: c.steps("CUDA graphs", [
            step("plain", 160, 8, bf, "reduce-overhead", profile=True),
            step("deepspeed", 160, 8, bf, "reduce-overhead", "zero0_bf16.json", profile=True)], need=100),
        "b32": lambda: c.steps("batch 32, bf16", [step("plain", 160, 32, bf, mode),
                                                  step("deepspeed", 160, 32, bf, mode, "zero0_bf16.json")], need=90),
        "e2e": lambda: c.end_to_end(need=60),
        "numerics": run_numerics,
        "zero2": lambda: c.steps("ZeRO-2, bf16", [step("deepspeed", 160, 8, bf, mode, "zero2_bf16.json"),
                                                  step("deepspeed", 160, 32, bf, mode, "zero2_bf16.json")], need=150),
        "224": lambda: c.steps("224 px", [step("plain", 224, 8, bf, mode),
                                          step("deepspeed", 224, 8, bf, mode, "zero0_bf16.json")], need=100),
        "fp16": lambda: c.steps("fp16", [step("plain", 160, 8, fp, mode),
                                         step("deepspeed", 160, 8, fp, mode, "zero0_fp16.json"),
                                         step("deepspeed", 160, 8, fp, mode, "zero2_fp16.json")], need=180),
        "112": lambda: c.steps("112 px", [step("deepspeed", 112, 8, bf, mode, "zero0_bf16.json")], need=70),
        "eager": lambda: c.steps("eager", [step("plain", 160, 8, bf, "eager", profile=True),
                                           step("deepspeed", 160, 8, bf, "eager", "zero0_bf16.json", profile=True),
                                           step("reference", 160, 8, bf, "eager", profile=True)], need=45),
        "reference": lambda: c.steps("reference compiled", [step("reference", 160, 8, bf, mode, profile=True),
                                                            step("reference", 160, 32, bf, mode)], need=60),
        "levers": lambda: c.run_script("levers", ["bench/train_step.py", "--levers", "--precisions",
                                                  "fp32" if rehearse else "bf16", *size], need=90, dest="levers.md"),
        "data": lambda: c.run_script("data pipeline", [
            "bench/data_pipeline.py", "--resolutions", "112" if rehearse else "160", "--clips", "8" if rehearse else "32",
            "--loader-workers", "2" if rehearse else "8"], need=40, dest="data_pipeline.md"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "bench/results/gpu"))
    p.add_argument("--budget", type=float, default=470, help="seconds for all phases")
    p.add_argument("--rehearse", action="store_true", help="toy sizes on the CPU")
    p.add_argument("--phases", default="all", help="comma-separated phase names, in the order given (default: all)")
    p.add_argument("--make-e2e-data", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.make_e2e_data:
        make_e2e_data(Path(args.make_e2e_data), args.rehearse)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    c = Check(out, args.budget, args.rehearse)
    table = phases(c, args.rehearse)
    chosen = list(table) if args.phases == "all" else [n.strip() for n in args.phases.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in table]
    if unknown:
        p.error(f"unknown --phases {unknown}; choose from {list(table)}")
    if "e2e" in chosen:
        c.start_data()
    for name in chosen:
        table[name]()
    c.close()
    c.write()
    print("\n" + (out / "goals.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
