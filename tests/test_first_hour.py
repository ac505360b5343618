"""A new user's first hour (issue 25): every common mistake a one-line error before anything
heavy is imported, Ctrl-C that checkpoints, the report agreeing with the aggregator, light
commands without torch, DeepSpeed's op cache, predict's naming of what it cannot predict,
figures that show what they draw, and the documented Python API working as written."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, data_cfg, run_train
from tests.test_aggregate import aggregate, write_result
from tests.test_report import cells_of, report, write_run

HEAVY = ("torch", "deepspeed", "timm", "decord", "matplotlib")

# cli.main on each argv in one fresh interpreter: its exit code, stderr, seconds, heavy modules
RUN_LIGHT = """
import contextlib, io, json, sys, time
import mma_dfer.cli as cli
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as e:
            rc = e.code
    out.append({"rc": rc, "err": err.getvalue(), "s": time.perf_counter() - t})
print(json.dumps({"runs": out, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def run_light(*argvs, cwd=ROOT):
    proc = subprocess.run([sys.executable, "-c", RUN_LIGHT, json.dumps([list(map(str, a)) for a in argvs])],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fake_run(folder: Path, *overrides) -> Path:
    """A run folder as far as the pre-flight checks look: its config.yaml and one complete
    checkpoint marker (the weights are never read: every check here fails before)."""
    from mma_dfer.config import load_config, save_config

    save_config(load_config("demo", list(overrides)), folder / "config.yaml")
    tag = folder / "checkpoints/epoch001"
    tag.mkdir(parents=True)
    (tag / "weights.pt").write_bytes(b"x")
    (tag / "complete.json").write_text(json.dumps({"tag": "epoch001", "global_step": 1, "epoch": 1,
                                                   "files": {"weights.pt": {"size": 1, "sha256": ""}}}))
    return folder


# -- 1, 7: pre-flight checks ---------------------------------------------------------------------

def test_train_and_evaluate_check_the_file_system_before_importing_torch(dfew_root, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "result.json").write_text("{}")
    run = fake_run(tmp_path / "run", f"data.root={dfew_root}")
    nopre = fake_run(tmp_path / "nopre", f"data.root={dfew_root}", "model.video_checkpoint=/none/mae_face.pth")
    other = tmp_path / "eval"
    other.mkdir()
    (other / "result.json").write_text(json.dumps({"checkpoint": str(tmp_path / "another-run")}))
    cases = [
        (["train", "--config", "dfew_160", "--set", f"data.root={dfew_root}"],
         "model.video_checkpoint=checkpoints/mae_face_pretrain_vit_base.pth: no such file (the MAE-Face ViT-B"),
        (["train", "--config", "demo", "--set", f"data.root={tmp_path / 'none'}"],
         f"data.root={tmp_path / 'none'} does not exist"),
        (["train", "--config", "demo", "--set", f"data.root={dfew_root}", "--set", f"output_dir={used}",
          "--resume", "never"], f"{used} already holds a run; --resume never"),
        (["train", "--config", "demo", "--set", f"data.root={dfew_root}", "--init-from", tmp_path / "nope"],
         f"--init-from {tmp_path / 'nope'}: no such run"),
        (["evaluate", "--checkpoint", tmp_path / "absent"], f"--checkpoint {tmp_path / 'absent'}: no such run"),
        (["evaluate", "--checkpoint", nopre], "model.video_checkpoint=/none/mae_face.pth: no such file"),
        (["evaluate", "--checkpoint", run, "--output", other],
         f"{other / 'result.json'} holds the evaluation of {tmp_path / 'another-run'}; evaluating {run} there would "
         "overwrite it"),
    ]
    out = run_light(*(argv for argv, _ in cases))
    assert out["heavy"] == []
    for (argv, message), r in zip(cases, out["runs"]):
        lines = r["err"].strip().splitlines()
        assert r["rc"] == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (argv, r)
        assert r["s"] < 5.0, (argv, r["s"])  # ~0.1 s idle; importing torch alone took 6-46 s under load


def test_evaluate_keeps_its_own_result_and_names_the_default_folder(tmp_path):
    from mma_dfer.runs.preflight import PreflightError, check_evaluation_output, evaluation_output

    data = data_cfg(tmp_path, "dfew", "data.resolution=32")
    out = evaluation_output(None, data, str(tmp_path / "runs-eval"))
    assert out == tmp_path / "runs-eval/dfew/res32/fold1"
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({"checkpoint": "runs/demo"}))
    check_evaluation_output(out, "runs/demo", False)  # the same checkpoint again: its own result
    with pytest.raises(PreflightError, match=r"holds the evaluation of runs/demo; evaluating "
                                             r"runs/dfew/res32/fold1 there would overwrite it: pass --output"):
        check_evaluation_output(out, "runs/dfew/res32/fold1", False)


# -- 2: Ctrl-C ------------------------------------------------------------------------------------

def test_a_first_ctrl_c_stops_at_a_step_a_second_at_once(capsys):
    from mma_dfer.training.signals import StopFlag

    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.raised == signal.SIGINT  # no KeyboardInterrupt: the loop checkpoints and stops
        assert "Ctrl-C: saving a checkpoint at the next step" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_training_checkpoints_and_prints_the_command_that_resumes(demo_root, tmp_path):
    from mma_dfer.training.signals import PREEMPTED_EXIT_CODE
    from tests.fault_plan import signal_at

    out = tmp_path / "run"
    args = ["--config", "demo", "--deepspeed_config", "cpu_fp32", "--set", f"data.root={demo_root}",
            "--set", f"output_dir={out}", "--set", "train.epochs=1"]
    proc = run_train(*args, env=signal_at(2, "SIGINT"), check=False)
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted (Ctrl-C): stopped by a signal at epoch 1, step 2; the same command resumes: "
                           f"python {ROOT / 'launch/train.py'} --config demo"), last
    assert (out / "checkpoints/step0000002/complete.json").is_file()
    # item 10: the training log names the run's own fingerprint as such
    fp = json.loads((out / "identity.json").read_text())["config_fingerprint"]
    assert f"(run fingerprint {fp})" in proc.stderr


# -- 3, 10: the report takes the aggregator's verdicts ------------------------------------------

def test_the_report_counts_refuses_and_lists_what_the_aggregator_does(tmp_path):
    runs = tmp_path / "runs"
    a = write_run(runs / "demo", "dfew", 160, 1, 90.0, 91.0)
    write_run(runs / "dfew/res160/fold1", "dfew", 160, 1, 60.0, 70.0)
    write_run(runs / "dfew/res160/fold2", "dfew", 160, 2, 62.0, 72.0)
    agg = aggregate(runs)
    assert agg.returncode == 2 and "two results for dfew res 160 fold 1" in agg.stderr
    out = tmp_path / "r.html"
    proc = report(runs, out)
    assert proc.returncode == 0, proc.stderr
    assert "6 runs (1 done, 0 failed, 2 duplicate, 3 missing)" in proc.stdout, proc.stdout
    assert proc.stdout.count("dfew res 160: fold 1 has 2 results") == 1  # said once, not twice
    page = cells_of(out)
    assert page.cells["runs outside any sweep/dfew/res160/uar_mean"] == "—"  # refused, as the aggregator does
    text = out.read_text()
    assert str(runs / "demo") in text and str(runs / "dfew/res160/fold1") in text  # both runs listed
    assert text.count("(duplicate, not averaged)") == 2 and f"UAR {a['uar']:.2f}" in text
    # mixed configs: one message, with the row's shared fingerprint named as such
    mixed = tmp_path / "mixed"
    write_run(mixed / "a", "mafw", 224, 1, 44.0, 58.0)
    write_run(mixed / "b", "mafw", 224, 2, 45.0, 58.0, overrides=["train.lr=0.5"])
    proc = report(mixed, tmp_path / "m.html")
    assert proc.stdout.count("its folds were made by different configs") == 1, proc.stdout
    assert "shared config fingerprint" in proc.stdout and "problem:" not in proc.stdout


def test_a_refused_mean_is_drawn_nowhere():
    from mma_dfer.figures import ablation_figure, folds_figure

    def lines(fig):
        return [len(ax.lines) for ax in fig.axes]

    group = {"label": "160", "uar": [60.0, 80.0], "war": [70.0, 90.0], "paper": None}
    assert lines(folds_figure([group], "t")) == [2, 2]  # dots and mean
    assert lines(folds_figure([{**group, "refused": True}], "t")) == [1, 1]  # dots only
    assert lines(ablation_figure([{**group, "refused": True}], "t")) == [1, 1]


# -- 4: light commands import no torch --------------------------------------------------------------

def test_light_commands_answer_without_torch(tmp_path):
    out = run_light(["aggregate", tmp_path / "none"], ["report", tmp_path / "none"],
                    ["verify", "--config", "no_such_config"], ["verify", "--fold", "7"], ["--version"],
                    ["train", "--config", "demo", "--set", "train.epoch=3"])
    assert out["heavy"] == []
    rcs = [r["rc"] for r in out["runs"]]
    assert rcs == [2, 2, 2, 2, 0, 2], out
    assert "did you mean train.epochs" in out["runs"][-1]["err"]


# -- 5: DeepSpeed's CPU op -----------------------------------------------------------------------------

def test_deepspeed_cpu_op_is_cached_per_environment_skipped_alone_and_announced(monkeypatch, tmp_path, caplog):
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    from mma_dfer.training import cpu_op

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert cpu_op.extensions_dir() == Path(sys.prefix) / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert cpu_op.extensions_dir() == tmp_path
    if get_accelerator().device_name() != "cpu":
        pytest.skip("the CPU op is built on the CPU accelerator only")
    monkeypatch.setitem(deepspeed.ops.__compatible_ops__, cpu_op.OP_NAME, True)
    with caplog.at_level("WARNING", "mma_dfer.train"):
        cpu_op.prepare(2, True)
    assert "building DeepSpeed's CPU op, one-time, ~80 s" in caplog.text
    cpu_op.prepare(1, True)
    assert deepspeed.ops.__compatible_ops__[cpu_op.OP_NAME] is False


# -- 6: predict --------------------------------------------------------------------------------------

def test_predict_names_non_videos_empty_folders_faceless_and_near_chance(tmp_path, capsys):
    from mma_dfer.cli import main, parser
    from mma_dfer.data.video import ClipError
    from mma_dfer.inference.predict import check_is_video, face_warnings, notes, VideoResult

    sub = next(a for a in parser()._actions if a.dest == "command").choices["predict"]
    assert sub.parse_args(["x.mp4", "--checkpoint", "r"]).workers == 1  # the fast path by default
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ClipError, match=r"notes.txt: not a video file"):
        check_is_video(text)
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--checkpoint", str(tmp_path), "--faces", "none"]) == 1
    err = capsys.readouterr().err
    assert "no video files in this folder" in err
    assert f"nothing to predict: no video files in {tmp_path / 'empty'}" in err
    probs = {c: p for c, p in zip("abcdefg", [0.25, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125])}
    cartoon = {"file": "cartoon.mp4", "window_start": 0.0, "window_end": 12.0, "top_class": "a",
               "probabilities": probs, "faces_detected": 0.45, "silent_audio": False}
    assert notes(cartoon) == "face in only 45% of frames: not an expression; p near chance (< 2/7)"
    assert face_warnings([VideoResult("cartoon.mp4", [cartoon])]) == [
        "warning: cartoon.mp4: a face in only 45% of its frames (MTCNN): not a face's expression, whatever its "
        "probabilities (marked faces_detected in --json/--csv)"]


def test_the_timeline_marks_a_top_class_near_chance():
    from mma_dfer.inference.timeline import segment_edges, top_class_runs

    def rec(t, p):
        return {"window_start": t, "window_end": t + 1, "top_class": "fear",
                "probabilities": {"fear": p, **{f"c{k}": (1 - p) / 6 for k in range(6)}}}

    records = [rec(0, 0.9), rec(1, 0.25), rec(2, 0.24)]
    assert [(n, bool(u)) for n, _, _, u in top_class_runs(records, segment_edges(records))] == [
        ("fear", False), ("fear", True)]


# -- 8, 9: configs and hints -----------------------------------------------------------------------

def test_a_users_yaml_inherits_a_shipped_config_by_name(tmp_path):
    from mma_dfer.config import load_config

    (tmp_path / "my.yaml").write_text("base: demo\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "my.yaml")
    assert cfg.train.epochs == 3 and cfg.name == load_config("demo").name and cfg.model.depth == 4


def test_hints_work_as_written(tmp_path, capsys):
    from mma_dfer.cli import main
    from mma_dfer.data.synthetic import write_mp4

    frames = np.zeros((20, 64, 64, 3), np.uint8)
    mute = write_mp4(tmp_path / "mute.mp4", frames, None)
    assert main(["inspect-clip", str(mute)]) == 2
    err = capsys.readouterr().err
    assert "no audio stream (pass --audio-policy silence to use silence)" in err and "data.audio_policy" not in err
    assert main(["inspect-clip", str(mute), "--audio-policy", "silence"]) == 0
    assert main(["make-data", "--dataset", "dfew", "--out", str(tmp_path / "d"), "--clips-per-class", "2"]) == 0
    assert "the test sets of fold(s) 3, 4, 5 are empty" in capsys.readouterr().err


# -- 11: help -------------------------------------------------------------------------------------------

def test_every_command_and_flag_says_what_it_is():
    import argparse

    from mma_dfer.cli import parser

    p = parser()
    assert "``" not in p.description and ":func:" not in p.description
    for name, sub in next(a for a in p._actions if a.dest == "command").choices.items():
        assert sub.description, name
        silent = [a.option_strings or a.dest for a in sub._actions
                  if not a.help and not isinstance(a, argparse._HelpAction)]
        assert silent == [], (name, silent)
    proc = subprocess.run([sys.executable, "-m", "mma_dfer", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and re.fullmatch(r"mma-dfer \S+.*\n", proc.stdout)


# -- 12: figures -----------------------------------------------------------------------------------------

def test_the_aggregators_plot_shows_its_title_colours_and_whole_whiskers(tmp_path):
    from PIL import Image, ImageDraw

    from mma_dfer.experiments.plot import plot
    from mma_dfer.experiments.table import collect

    for f, (u, w) in enumerate([(90.0, 99.0), (99.0, 100.0), (100.0, 100.0)], 1):
        write_result(tmp_path / "runs", "dfew", 160, f, u, w)
    [png] = plot(collect(tmp_path / "runs"), tmp_path / "png")
    img = Image.open(png).convert("RGB")
    title = "DFEW: UAR (blue) / WAR (green), mean ± std over folds; paper: black"
    assert img.width >= ImageDraw.Draw(img).textlength(title) + 40
    a = np.asarray(img)
    near_bottom = img.height - 60
    # an incomplete row keeps its metric's hue, paler (not grey against a blue/green legend)
    assert tuple(a[near_bottom, 80]) == (179, 204, 250) and tuple(a[near_bottom, 128]) == (174, 220, 186)
    # UAR 96.33 ± 5.51: the whisker reaches above the gridline of 100, under the title and legend
    grid = np.where((a[:, img.width - 15] == (225, 225, 225)).all(1))[0]
    top_line = grid.min()  # the gridline of 100
    dark = np.where(a[:, 80].sum(1) < 100)[0]  # the UAR bar's centre column
    assert any(30 < y < top_line for y in dark), (top_line, dark[:20])


def test_report_figures_keep_points_at_100_and_uar_on_war():
    from mma_dfer.figures import curves_figure, folds_figure

    fig = folds_figure([{"label": "160", "uar": [100.0, 98.0], "war": [100.0, 99.0], "paper": None}], "t")
    assert all(ax.get_ylim()[1] > 100 for ax in fig.axes)
    fig = curves_figure({"x": [1], "loss": [1.0], "lr": [1e-4]}, {"x": [1, 2], "uar": [50.0, 60.0],
                                                                  "war": [50.0, 60.0]})
    by = {line.get_label(): line for line in fig.axes[2].lines}
    assert by["UAR"].get_zorder() > by["WAR"].get_zorder() and by["WAR"].get_markerfacecolor() == "none"


# -- 13: the documented Python API ----------------------------------------------------------------------

@pytest.mark.slow
def test_the_python_api_example_runs_as_documented(demo_root, tmp_path):
    doc = (ROOT / "docs/api.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "docs/api.md" in readme and "docs/faq.md" in readme
    faq = (ROOT / "docs/faq.md").read_text()
    assert "## Where are the pretrained encoders?" in faq  # the pre-flight message's anchor
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    run = tmp_path / "run"
    run_train("--config", "demo", "--deepspeed_config", "cpu_fp32", "--set", f"data.root={demo_root}",
              "--set", f"output_dir={run}", "--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=2",
              "--set", "eval.clips=[1]")
    clip = next((demo_root / "Clip/original").glob("*.mp4"))
    first, rest = code.split("\n", 1)
    assert first.startswith("run, clip = ")
    proc = subprocess.run([sys.executable, "-c", f"run, clip = {str(run)!r}, {str(clip)!r}\n" + rest], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    top = proc.stdout.strip().splitlines()[-1].split()[0]  # (DeepSpeed prints a warning on stdout first)
    assert top in ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"), proc.stdout
