"""The one-call GPU check of issue 21's goals, most important first, inside a time budget: each
phase runs only while enough time is left, and the goals table is rewritten after every phase, so
a cut-off run still leaves its numbers.

    python bench/gpu_check.py --out DIR [--budget 470] [--phases graphs,b8,...] [--mode M] [--rehearse]

Files (at most 8, as the device tool returns; six are written): goals.md (goal, target,
measured, PASS/FAIL, the card named), steps.md (every step-benchmark row with its per-step
profile line: launches, syncs, device time by kernel kind), e2e.md (the training run's own log
against the step benchmark, and predict's videos/s), numerics.md (the same-function check and the
killed-and-resumed run), results.json (raw numbers); the shell wrapper adds gpu_check.log.

Phases (``--phases``, default all, in this order; ``phases()`` says what each runs): graphs, b8,
zero2, b32, zero2-32, fp16, fp16-32, 224, 112, cache, e2e, predict, numerics, resume, reference.
Every configuration runs in its own process, so that no row inherits another's warm-up or peak
memory; all of them share one inductor cache (``--cache-dir``, kept between calls on a warm
machine), so a configuration whose graphs were compiled before starts from the cache, and the
first process of the check against a later one measures goal 5. The phases after graphs and b8
run the compile mode that won at batch 8 (``--mode`` to name one, as a second call must: its
$OUT starts empty). ``--rehearse`` runs the phases at toy sizes on the CPU (torch.compile with
the aot_eager backend there: inductor's C++ build of two ViT-Bs takes many minutes on two cores,
and aot_eager writes no inductor cache, so goal 5 is rehearsed, not measured).
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

GRAPHS, DEFAULT = "reduce-overhead", "default"  # CUDA graphs around the compiled forward and backward; auto's mode
NUMERICS = "bf16 eager,bf16 compiled,fp16 eager,fp16 compiled"
TARGETS = {"b8": 400, "b32": 650, "ratio": 0.97, "224": 220, "warm_start_s": 15, "e2e": 0.95}


class Check:
    def __init__(self, out: Path, budget: float, rehearse: bool, mode: str = "measured"):
        self.out, self.budget, self.rehearse, self.fixed_mode = out, budget, rehearse, mode
        self.start = time.time()
        self.rows: list[dict] = []
        self.ran: list[dict] = []  # the spec of each row, in order
        self.e2e: dict = {}
        self.made: dict = {}  # the end-to-end dataset (data.json)
        self.predict: dict = {}
        self.numerics: str = ""
        self.resume: dict = {}
        self.cold: dict = {}  # the first process's start, when the cache was empty
        self.skipped: list[str] = []
        import torch

        self.cuda = torch.cuda.is_available()
        # toy sizes for the CPU rehearsal: every phase, same code, seconds each
        self.size = ({"frames": 2, "steps": 1, "warmup": 1, "res": {160: 112, 224: 112, 112: 112}, "batch": {8: 1, 32: 2}}
                     if rehearse else {"frames": 16, "steps": 20, "warmup": 5, "res": {160: 160, 224: 224, 112: 112},
                                       "batch": {8: 8, 32: 32}})
        cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) if os.environ.get("TORCHINDUCTOR_CACHE_DIR") else None
        self.cache_was_empty = cache is None or not cache.is_dir() or not any(cache.iterdir())
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

    def fits(self, name: str, need: float) -> bool:
        """Whether ``need`` seconds are left for phase ``name``; a phase that does not fit is listed."""
        if self.left() < need:
            self.skipped.append(f"{name} (needs ~{need:.0f} s, {self.left():.0f} s left)")
            return False
        return True

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

    def mode(self) -> str:
        """The compile mode of the phases after goal 1's: ``--mode``, else the faster of CUDA
        graphs and the default mode at batch 8 (zero0 bf16) as measured so far, else the default
        (what ``train.compile: auto`` gives on a GPU now)."""
        if self.fixed_mode != "measured":
            return self.fixed_mode
        rates = {m: r["clips_per_s"] for m in (GRAPHS, DEFAULT)
                 if (r := self.find("deepspeed", "zero0_bf16.json", 160, 8, "bf16", m))}
        return max(rates, key=rates.get) if rates else DEFAULT

    def steps(self, name: str, specs: list[dict], need: float) -> None:
        """Run step-benchmark rows, each configuration in its own process, when ``need`` seconds are left."""
        if not self.fits(name, need):
            return
        t0 = time.time()
        for spec in specs:
            for r in ts.run_group([spec], timeout=max(self.left(), 30)):
                self.rows.append(r)
                self.ran.append(spec)
                if len(self.rows) == 1 and self.cache_was_empty and r.get("start_s"):
                    self.cold = {"label": r["label"], "start_s": r["start_s"]}
                print(ts.row(r) + (f"\n  {ts.profile_line(r)}" if r.get("profile") else "")
                      + (f"\n  start to first timed step {r['start_s']:.1f} s" if r.get("start_s") else ""), flush=True)
        print(f"[{name}: {time.time() - t0:.0f} s, {self.left():.0f} s left]", flush=True)
        self.write()

    def warm_start(self, need: float) -> None:
        """Goal 5: the check's first configuration again, in a new process, from the cache the
        first one filled (start to first timed step against the first run's)."""
        if not self.fits("warm-cache rerun", need):
            return
        first = next((s for s, r in zip(self.ran, self.rows) if "error" not in r), None)
        spec = first or self.spec("deepspeed", 160, 8, "bf16", self.mode(), "zero0_bf16.json")
        if first is None:  # nothing ran before: the first run too
            self.steps("cold-cache run", [spec], need=0)
        self.steps("warm-cache rerun", [{**spec, "rerun": True, "label": spec["label"] + " (warm-cache rerun)"}], need=0)

    # -- the end-to-end run --------------------------------------------------------------------
    def train_cmd(self, out_dir: Path) -> list[str]:
        """`deepspeed launch/train.py` on the generated dataset: pre-decoded cache, augmentation on
        the device, loader workers, the compile mode of the step rows it is compared with."""
        made = self.made
        root, workers = Path(made["root"]), made["workers"]
        res, batch = self.size["res"][160], self.size["batch"][8]
        sets = [f"data.root={root}", "data.dataset=dfew", f"data.resolution={res}", "data.source=frames",
                f"data.cache_dir={root / 'cache'}", "data.gpu_augment=true", f"data.num_workers={min(8, workers)}",
                "train.epochs=1", f"train.batch_size={batch}", "train.log_every=25", "eval.clips=[1]",
                f"train.compile={self.mode()}", f"output_dir={out_dir}"]
        if self.rehearse:
            sets += ["train.log_every=2", "train.compile_backend=aot_eager", "data.num_frames=2", "data.num_workers=2"]
        else:
            sets += ["model.video_checkpoint=null", "model.audio_checkpoint=null"]  # no pretrained files here
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "1", str(ROOT / "launch/train.py"),
               "--config", str(ROOT / "configs/demo.yaml" if self.rehearse else ROOT / "configs/dfew_160.yaml"),
               "--deepspeed_config", str(ROOT / "ds_configs/zero0_bf16.json"), "--resume", "auto"]
        for kv in sets:
            cmd += ["--set", kv]
        return cmd

    def train(self, out_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
        """One training run to its end (or until the time left is spent: exit code -1)."""
        cmd = self.train_cmd(out_dir)
        try:
            return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                  capture_output=True, text=True, timeout=max(self.left(), 60))
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(cmd, -1, (e.stdout or b"").decode(), "timed out")

    def end_to_end(self, need: float) -> None:
        """`deepspeed launch/train.py` on a generated dataset (224-px frames, enough clips for 200+
        steps of 8); its own log's clips/s against the step benchmark's at the same batch and mode."""
        if not self.fits("end-to-end run", need):
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
        self.made = {**json.loads((self.work / "data.json").read_text()), "wait_s": time.time() - t0}
        proc = self.train(self.work / "run")
        log = proc.stdout + proc.stderr
        self.e2e = {"returncode": proc.returncode, **self.made, "wall_s": time.time() - t0, "ds_config": "zero0_bf16.json",
                    "batch": self.size["batch"][8], "mode": self.mode(), "run": str(self.work / "run"),
                    **parse_train_log(log), "log_tail": "\n".join(ln for ln in log.splitlines() if "[rank0]" in ln or "rror" in ln)[-6000:]}
        print(f"[end-to-end: rc {proc.returncode}, {self.e2e.get('rate_median', 'n/a')} clips/s in the log, "
              f"{time.time() - t0:.0f} s, {self.left():.0f} s left]", flush=True)
        self.write()

    def killed_and_resumed(self, need: float) -> None:
        """Goal 7: the end-to-end run again, stopped through the suite's fault plan (tests/fault_plan.py:
        a signal to itself after half the steps: checkpoint, exit 75), then resumed to the end; its final
        weights and metrics against the uninterrupted end-to-end run's, bit for bit. Where they differ, a
        second uninterrupted run says whether the kernels themselves are not deterministic."""
        from mma_dfer.training.signals import PREEMPTED_EXIT_CODE
        from tests.fault_plan import signal_at

        if self.e2e.get("returncode") != 0:
            self.skipped.append("killed-and-resumed run (needs the end-to-end run: its uninterrupted reference)")
            return
        if not self.fits("killed-and-resumed run", need):
            return
        t0, straight, killed = time.time(), self.work / "run", self.work / "killed"
        kill_at = max(1, self.made["train_clips"] // self.size["batch"][8] // 2)
        stopped = self.train(killed, signal_at(kill_at))
        resumed = self.train(killed)
        self.resume = {"kill_at": kill_at, "stopped_rc": stopped.returncode, "expected_rc": PREEMPTED_EXIT_CODE,
                       "resumed_rc": resumed.returncode, "resumed": "resumed from" in resumed.stdout + resumed.stderr,
                       **compare_runs(straight, killed)}
        if not self.resume.get("identical") and self.fits("second uninterrupted run", need / 2):
            self.train(self.work / "again")
            self.resume["uninterrupted_twice"] = compare_runs(straight, self.work / "again")
        self.resume["wall_s"] = time.time() - t0
        print(f"[killed and resumed: {self.resume}, {self.left():.0f} s left]", flush=True)
        self.write()

    def close(self) -> None:
        """Stop the dataset writer if it still runs; remove the end-to-end runs' folder."""
        if self.data_proc is not None and self.data_proc.poll() is None:
            self.data_proc.kill()
            self.data_proc.wait()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- other phases ----------------------------------------------------------------------------
    def run_script(self, name: str, cmd: list[str], need: float) -> tuple[int, str]:
        """A bench script in its own process: (exit code, its output's tail); -1 when it did not run."""
        if not self.fits(name, need):
            return -1, ""
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=max(self.left(), 30))
            rc, text = proc.returncode, proc.stdout[-3000:] + (proc.stderr[-1500:] if proc.returncode else "")
        except subprocess.TimeoutExpired:
            rc, text = -1, f"{name}: timed out"
        print(text + f"\n[{name}: {time.time() - t0:.0f} s, {self.left():.0f} s left]", flush=True)
        return rc, text

    def run_numerics(self, need: float) -> None:
        dest = self.out / "numerics.md"
        cmd = ["bench/numerics.py", "--batch", "2", "--variants", NUMERICS, "--markdown", str(dest)] + (
            ["--config", "configs/tiny.yaml", "--resolution", "32", "--frames", "8", "--backend", "aot_eager"]
            if self.rehearse else [])
        self.run_script("numerics", cmd, need)
        self.numerics = dest.read_text() if dest.is_file() else ""
        self.write()

    def run_predict(self, need: float) -> None:
        """Goal 6: ``predict``'s videos/s through ViT-B (generated face clips, then MTCNN on a real
        face clip), each in its own process."""
        size = ["--config", "configs/tiny.yaml", "--videos", "2", "--batch-size", "2", "--precision", "fp32"] \
            if self.rehearse else ["--videos", "16", "--batch-size", "32", "--workers", "8", "--precision", "bf16"]
        for faces in ("none", "mtcnn"):
            rc, text = self.run_script(f"predict, faces {faces}", ["bench/predict_speed.py", "--faces", faces, *size],
                                       need / 2)
            if rc == -1 and not text:
                continue
            m = re.search(rf"faces {faces}: (\d+) videos in ([\d.]+) s: ([\d.]+) videos/s", text)
            self.predict[faces] = {"videos_per_s": float(m.group(3)), "videos": int(m.group(1)),
                                   "settings": " ".join(size)} if m and rc == 0 else {"error": text.strip()[-300:]}
        self.write()

    # -- output ------------------------------------------------------------------------------------
    def find(self, engine: str, ds_config: str, res: int, batch: int, precision: str, mode: str) -> dict | None:
        """The measured row of one configuration (not the warm-cache rerun), or None."""
        for r in self.rows:
            if "error" not in r and not r.get("rerun") and r["engine"] == engine and r.get("ds_config", "") == ds_config \
                    and r["nominal"] == [res, batch] and r["precision"] == precision and r["compile"] == mode:
                return r
        return None

    def errored(self, ds_config: str, res: int, batch: int, precision: str) -> str:
        """The error of a DeepSpeed row of this configuration that ran and failed, else ''."""
        return next((r["error"][:80] for r in self.rows if "error" in r and r.get("ds_config") == ds_config
                     and r["nominal"] == [res, batch] and r["precision"] == precision), "")

    def rate(self, ds_config: str, res: int, batch: int, precision: str) -> tuple[float, str] | None:
        """The best clips/s of a DeepSpeed configuration over the compile modes measured, and its mode."""
        found = [(r["clips_per_s"], r["compile"]) for m in (GRAPHS, DEFAULT)
                 if (r := self.find("deepspeed", ds_config, res, batch, precision, m))]
        return max(found) if found else None

    def ratio(self, precision: str, res: int, batch: int) -> tuple[float, str] | None:
        """DeepSpeed zero0 / plain at the same compile mode (the mode where DeepSpeed is fastest)."""
        ds = f"zero0_{precision}.json"
        pairs = [(d["clips_per_s"] / p["clips_per_s"], d["clips_per_s"], m) for m in (GRAPHS, DEFAULT)
                 if (d := self.find("deepspeed", ds, res, batch, precision, m)) and (p := self.find("plain", "", res, batch, precision, m))]
        if not pairs:
            return None
        value, _, mode = max(pairs, key=lambda t: t[1])
        return value, mode

    def goals_table(self) -> str:
        lines = ["| goal | target | measured | |", "|---|---|---|---|"]

        def add(goal, target, shown, verdict):
            lines.append(f"| {goal} | {target} | {shown.replace('|', '/')} | {verdict} |")

        def judge(value, target, at_most=False):
            return "PASS" if (value <= target if at_most else value >= target) else "FAIL"

        def clips(goal, target, ds, res, batch, prec):
            got = self.rate(ds, res, batch, prec)
            if got:
                add(goal, f">= {target} clips/s" if target else "measured", f"{got[0]:.1f} clips/s ({got[1]})",
                    judge(got[0], target) if target else "-")
            else:
                err = self.errored(ds, res, batch, prec)
                add(goal, f">= {target} clips/s" if target else "measured", f"failed: {err}" if err else "not run",
                    "FAIL" if err else "-")

        def ratio(goal, prec, batch):
            got = self.ratio(prec, 160, batch)
            add(goal, f">= {TARGETS['ratio']}", f"{got[0]:.3f} ({got[1]})" if got else "not run",
                judge(got[0], TARGETS["ratio"]) if got else "-")

        def runs(goal, ds, prec):
            got, err = self.rate(ds, 160, 32, prec), self.errored(ds, 160, 32, prec)
            add(goal, "runs", f"{got[0]:.1f} clips/s ({got[1]})" if got else f"failed: {err}" if err else "not run",
                "PASS" if got else "FAIL" if err else "-")

        for ds in ("zero0_bf16.json", "zero2_bf16.json"):
            clips(f"1. batch 8, {ds}", TARGETS["b8"], ds, 160, 8, "bf16")
        g, d = (self.find("deepspeed", "zero0_bf16.json", 160, 8, "bf16", m) for m in (GRAPHS, DEFAULT))
        add("1. CUDA graphs (reduce-overhead) / default, batch 8, zero0", "measured (> 1: `auto` should pick graphs)",
            f"{g['clips_per_s'] / d['clips_per_s']:.3f} ({g['clips_per_s']:.1f} / {d['clips_per_s']:.1f})" if g and d
            else "not run", "-")
        clips("2. batch 32, zero0_bf16.json", TARGETS["b32"], "zero0_bf16.json", 160, 32, "bf16")
        ratio("3. DeepSpeed/plain, batch 8 (zero0)", "bf16", 8)
        ratio("3. DeepSpeed/plain, batch 32 (zero0)", "bf16", 32)
        runs("3. ZeRO-2 at batch 32 (zero2_bf16.json)", "zero2_bf16.json", "bf16")
        for ds in ("zero0_fp16.json", "zero2_fp16.json"):
            clips(f"4. fp16 batch 8, {ds}", TARGETS["b8"], ds, 160, 8, "fp16")
        clips("4. fp16 batch 32, zero0_fp16.json", TARGETS["b32"], "zero0_fp16.json", 160, 32, "fp16")
        ratio("4. fp16 DeepSpeed/plain, batch 8 (zero0)", "fp16", 8)
        ratio("4. fp16 DeepSpeed/plain, batch 32 (zero0)", "fp16", 32)
        runs("4. fp16 ZeRO-2 at batch 32 (zero2_fp16.json)", "zero2_fp16.json", "fp16")
        clips("4. 224 px, batch 8, zero0_bf16.json", TARGETS["224"], "zero0_bf16.json", 224, 8, "bf16")
        clips("4. 112 px, batch 8, zero0_bf16.json", None, "zero0_bf16.json", 112, 8, "bf16")
        for goal, target, shown, verdict in self.cache_rows() + self.e2e_rows() + self.function_rows():
            add(goal, target, shown, verdict)
        return "\n".join(lines) + "\n"

    def cache_rows(self) -> list[tuple]:
        """Goal 5: process start to first timed step, cold (the check's first process on an empty
        cache) and warm (the same configuration again)."""
        warm = next((r for r in self.rows if r.get("rerun") and "error" not in r), None)
        cold = (f"{self.cold['start_s']:.1f} s ({self.cold['label']})" if self.cold else
                "not run" if self.cache_was_empty else "not measured: the cache was not empty at the start")
        shown = f"{warm['start_s']:.1f} s ({warm['label']})" if warm else "not run"
        note = " (aot_eager on the CPU: no inductor cache, rehearsed only)" if self.rehearse else ""
        return [("5. start to first timed step, first run (empty cache)", "measured", cold + note, "-"),
                ("5. start to first timed step, second run (warm cache)", f"<= {TARGETS['warm_start_s']} s", shown + note,
                 ("PASS" if warm["start_s"] <= TARGETS["warm_start_s"] else "FAIL") if warm else "-")]

    def e2e_rows(self) -> list[tuple]:
        e, rows = self.e2e, []
        bench = self.find("deepspeed", "zero0_bf16.json", 160, 8, "bf16", e.get("mode", ""))
        target = f">= {TARGETS['e2e']}"
        if e.get("rate_median") and bench:
            ratio = e["rate_median"] / bench["clips_per_s"]
            rows.append(("6. end to end / step benchmark (batch 8, zero0)", target,
                         f"{ratio:.3f} ({e['rate_median']:.1f} / {bench['clips_per_s']:.1f}, {e['mode']})",
                         "PASS" if ratio >= TARGETS["e2e"] else "FAIL"))
        else:
            rc = e.get("returncode")
            shown = ("not run" if rc is None else rc if isinstance(rc, str) else f"failed (exit code {rc})" if rc else
                     "no step-benchmark row in its mode" if e.get("rate_median") else "fewer than two log windows")
            rows.append(("6. end to end / step benchmark (batch 8, zero0)", target, shown,
                         "FAIL" if isinstance(rc, int) and rc else "-"))
        for faces, what in (("none", "generated face clips"), ("mtcnn", "MTCNN on a real face clip")):
            p = self.predict.get(faces)
            shown = "not run" if p is None else f"failed: {p['error'][-80:]}" if "error" in p else \
                f"{p['videos_per_s']:.2f} videos/s ({p['settings']})"
            rows.append((f"6. predict, ViT-B, {what}", "measured", shown, "FAIL" if p and "error" in p else "-"))
        return rows

    def function_rows(self) -> list[tuple]:
        verdicts = re.findall(r"^\| ((?:fp32|bf16|fp16) (?:eager|compiled)) \|.*\| (PASS|FAIL) \|$", self.numerics, re.M)
        rows = [("7. same function (bench/numerics.py, logits and gradients)", "half precision within 1e-2 of fp32 eager",
                 ", ".join(f"{n}: {v}" for n, v in verdicts) or "not run",
                 ("PASS" if all(v == "PASS" for _, v in verdicts) else "FAIL") if verdicts else "-")]
        r = self.resume
        if not r:
            shown, verdict = "not run", "-"
        else:
            shown = (f"stopped at step {r['kill_at']} (exit {r['stopped_rc']}), resumed (exit {r['resumed_rc']}): "
                     f"{resume_summary(r)}")
            verdict = "PASS" if r.get("identical") and r["stopped_rc"] == r["expected_rc"] and r["resumed"] else "FAIL"
        rows.append(("7. killed and resumed run = uninterrupted run", "bit-identical weights and metrics", shown, verdict))
        return rows

    def card(self) -> str:
        import torch

        if not self.cuda:
            return "cpu (rehearsal: toy sizes, the numbers mean nothing)"
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.total_memory / 2 ** 30:.0f} GiB, {p.multi_processor_count} SMs)"

    def write(self) -> None:
        import torch

        head = (f"card: {self.card()}; torch {torch.__version__}; {time.time() - self.start:.0f} s of a "
                f"{self.budget:.0f} s budget; later phases in mode {self.mode()}\n\n")
        skipped = "".join(f"- skipped: {s}\n" for s in self.skipped)
        atomic_write_text(self.out / "goals.md", head + self.goals_table() + ("\n" + skipped if skipped else ""))
        atomic_write_text(self.out / "steps.md", head + ts.table(self.rows) + "".join(
            f"- {r['label']} ({r['res']} px, batch {r['batch']}, {r['precision']}): start to first timed step "
            f"{r['start_s']:.1f} s\n" for r in self.rows if r.get("start_s")))
        if "ds_config" in self.e2e or self.predict:
            atomic_write_text(self.out / "e2e.md", head + (e2e_text(self.e2e) if "ds_config" in self.e2e else "")
                              + predict_text(self.predict))
        if self.resume:
            numerics = self.numerics or "numerics.py: not run\n"
            atomic_write_text(self.out / "numerics.md", numerics + "\n" + resume_text(self.resume))
        atomic_write_json(self.out / "results.json", {"rows": self.rows, "e2e": self.e2e, "predict": self.predict,
                                                      "resume": self.resume, "cold": self.cold, "skipped": self.skipped})


def compare_runs(a: Path, b: Path) -> dict:
    """Final trainable weights and result.json metrics of two runs: identical, or how far apart."""
    import torch

    from mma_dfer.runs import checkpoints
    from mma_dfer.safe_files import CheckpointError

    try:
        wa, wb = (checkpoints.saved_module(checkpoints.resolve(d)) for d in (a, b))
        ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    except (OSError, ValueError, CheckpointError) as e:
        return {"identical": False, "error": f"{type(e).__name__}: {e}"[:200]}
    differ = {k: float((wa[k].float() - wb[k].float()).abs().max()) for k in wa if k in wb and not torch.equal(wa[k], wb[k])}
    metrics = {k: (ra.get(k), rb.get(k)) for k in ("uar", "war", "confusion_matrix") if ra.get(k) != rb.get(k)}
    return {"identical": not differ and wa.keys() == wb.keys() and not metrics, "tensors": len(wa),
            "tensors_differing": len(differ), "max_abs_diff": max(differ.values(), default=0.0),
            "metrics_differing": sorted(metrics)}


def resume_summary(r: dict) -> str:
    if "error" in r:
        return f"not compared ({r['error']})"
    text = ("bit-identical" if r["identical"] else
            f"{r['tensors_differing']} of {r['tensors']} tensors differ (max {r['max_abs_diff']:.2e}), "
            f"metrics differing: {r['metrics_differing'] or 'none'}")
    twice = r.get("uninterrupted_twice")
    if twice:
        text += ("; two uninterrupted runs are bit-identical (the resume is at fault)" if twice.get("identical") else
                 f"; two uninterrupted runs differ too ({twice.get('tensors_differing')} tensors, max "
                 f"{twice.get('max_abs_diff', 0):.2e}): the kernels are not deterministic")
    return text


def resume_text(r: dict) -> str:
    return (f"## Killed and resumed against uninterrupted (goal 7)\n\n- the end-to-end run's settings, stopped by "
            f"the trainer's test hook after step {r['kill_at']}: exit code {r['stopped_rc']} (expected "
            f"{r['expected_rc']}); resumed: exit code {r['resumed_rc']}, 'resumed from' in its log: {r['resumed']}\n"
            f"- final weights and metrics: {resume_summary(r)}\n- phase: {r.get('wall_s', 0):.0f} s\n")


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
    return (f"`deepspeed launch/train.py` ({e['ds_config']}, batch {e['batch']}, train.compile={e['mode']}): exit code "
            f"{e['returncode']}\n\n"
            f"- dataset (written while the step benchmark ran): generated in {e['generate_s']:.0f} s, cached in "
            f"{e['cache_s']:.0f} s with {e['workers']} processes; {e['train_clips']} training clips; the run waited "
            f"{e['wait_s']:.0f} s for it\n"
            f"- clips/s per log window: {rates or 'none'} (the first includes compilation)\n"
            f"- median after the first: {e.get('rate_median')}\n"
            f"- after the last step: checkpoint {e.get('checkpoint_s', 'n/a')} s, then evaluation "
            f"{e.get('evaluation_s', 'n/a')} s\n- whole phase: {e['wall_s']:.0f} s\n\n```\n{e['log_tail']}\n```\n")


def predict_text(p: dict) -> str:
    if not p:
        return ""
    lines = ["\n## predict (bench/predict_speed.py, one process per row)\n", "| faces | videos/s | settings |", "|---|---|---|"]
    for faces, r in p.items():
        lines.append(f"| {faces} | {r['videos_per_s']:.2f} | {r['settings']} |" if "error" not in r
                     else f"| {faces} | failed | {r['error'][-200:]} |")
    return "\n".join(lines) + "\n"


def phases(c: Check) -> dict:
    """Every phase by name, most important first (issue 21's goals in order): CUDA graphs at the
    paper's batch of 8 (the lever for the host-bound step) against the default mode, ZeRO-2 at
    batch 8; batch 32 with the device time by kernel kind (where goal 2's time goes); ZeRO-2 at
    batch 32; fp16; 224 and 112 px; the warm-cache start; the end-to-end run and predict; the
    numerics and the killed-and-resumed run; then the timm reference."""
    bf, fp = "bf16", "fp16"
    step = c.spec

    def mode_rows(res, batch, prec, configs, profile=False):
        """Rows at the chosen mode (read when the phase runs: after goal 1's rows)."""
        return [step(engine, res, batch, prec, c.mode(), ds, profile=profile) for engine, ds in configs]
    zero0 = [("deepspeed", "zero0_bf16.json"), ("plain", "")]
    return {
        "graphs": lambda: c.steps("batch 8, CUDA graphs", [
            step("deepspeed", 160, 8, bf, GRAPHS, "zero0_bf16.json", profile=True),
            step("plain", 160, 8, bf, GRAPHS, profile=True)], need=140),
        "b8": lambda: c.steps("batch 8, default mode", [
            step("deepspeed", 160, 8, bf, DEFAULT, "zero0_bf16.json", profile=True),
            step("plain", 160, 8, bf, DEFAULT, profile=True)], need=100),
        "zero2": lambda: c.steps("ZeRO-2, batch 8", mode_rows(160, 8, bf, [("deepspeed", "zero2_bf16.json")], True),
                                 need=70),
        "b32": lambda: c.steps("batch 32", mode_rows(160, 32, bf, zero0, profile=True), need=130),
        "zero2-32": lambda: c.steps("ZeRO-2, batch 32", mode_rows(160, 32, bf, [("deepspeed", "zero2_bf16.json")]),
                                    need=70),
        "fp16": lambda: c.steps("fp16, batch 8", mode_rows(160, 8, fp, [
            ("deepspeed", "zero0_fp16.json"), ("plain", ""), ("deepspeed", "zero2_fp16.json")]), need=180),
        "fp16-32": lambda: c.steps("fp16, batch 32", mode_rows(160, 32, fp, [
            ("deepspeed", "zero0_fp16.json"), ("plain", ""), ("deepspeed", "zero2_fp16.json")]), need=180),
        "224": lambda: c.steps("224 px", mode_rows(224, 8, bf, zero0), need=130),
        "112": lambda: c.steps("112 px", mode_rows(112, 8, bf, zero0[:1]), need=90),
        "cache": lambda: c.warm_start(need=40),
        "e2e": lambda: c.end_to_end(need=90),
        "predict": lambda: c.run_predict(need=90),
        "numerics": lambda: c.run_numerics(need=200),
        "resume": lambda: c.killed_and_resumed(need=120),
        "reference": lambda: c.steps("reference compiled", [step("reference", 160, 8, bf, c.mode(), profile=True),
                                                            step("reference", 160, 32, bf, c.mode())], need=90),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "bench/results/gpu"))
    p.add_argument("--budget", type=float, default=470, help="seconds for all phases")
    p.add_argument("--rehearse", action="store_true", help="toy sizes on the CPU")
    p.add_argument("--phases", default="all", help="comma-separated phase names, in the order given (default: all)")
    p.add_argument("--mode", default="measured", choices=("measured", GRAPHS, DEFAULT),
                   help="compile mode of the phases after graphs/b8 (default: the faster one measured)")
    p.add_argument("--cache-dir", default=os.environ.get("TORCHINDUCTOR_CACHE_DIR")
                   or str(Path(tempfile.gettempdir()) / "mma-dfer-gpu-check-inductor"),
                   help="the inductor cache every process shares (kept between calls on a warm machine)")
    p.add_argument("--make-e2e-data", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.make_e2e_data:
        make_e2e_data(Path(args.make_e2e_data), args.rehearse)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = args.cache_dir  # the worker and training processes inherit it
    c = Check(out, args.budget, args.rehearse, args.mode)
    table = phases(c)
    chosen = list(table) if args.phases == "all" else [n.strip() for n in args.phases.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in table]
    if unknown:
        p.error(f"unknown --phases {unknown}; choose from {list(table)}")
    if "e2e" in chosen:
        c.start_data()
    try:
        for name in chosen:
            table[name]()
    finally:
        c.close()
    c.write()
    print("\n" + (out / "goals.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
