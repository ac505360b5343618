"""Every number with its uncertainty (issue 27): the stratified bootstrap against independent
computations, seeds as a sweep axis, the aggregator's intervals and verdicts, paired differences
of sweep variants, and the report that shows them (opened in headless Chromium)."""
import csv
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mma_dfer import stats
from mma_dfer.experiments.table import collect
from mma_dfer.experiments.sweep import expand, load_sweep, restrict, write_definition
from tests.conftest import ROOT, result_stamp

Z95 = 1.959964


def predictions(accuracy, per_class, seed=0, num_classes=7) -> dict:
    """Per-clip predictions of a classifier right on ``accuracy`` of each class's clips (a
    number or one per class), wrong ones one class over; ``per_class`` clips of each class (a
    number or one per class)."""
    rng = np.random.default_rng(seed)
    sizes = np.broadcast_to(per_class, num_classes)
    labels = np.repeat(np.arange(num_classes), sizes)
    acc = np.broadcast_to(accuracy, num_classes)[labels]
    preds = np.where(rng.random(len(labels)) < acc, labels, (labels + 1) % num_classes)
    return {"index": list(range(len(labels))), "label": labels.tolist(), "pred": preds.tolist()}


def write_result(folder, dataset, res, fold, clips, clips2=None, seed=1, overrides=()) -> dict:
    """A result.json as training writes it, its metrics computed from ``clips``."""
    folder.mkdir(parents=True, exist_ok=True)
    uar, war = stats.scores(clips["label"], [clips["pred"]])
    two = stats.scores(clips2["label"], [clips2["pred"]]) if clips2 else (None, None)
    ci = stats.mean_intervals([(clips["label"], [clips["pred"]])])
    result = {"dataset": dataset, "fold": fold, "resolution": res, "epoch": 25, "uar": float(uar[0]),
              "war": float(war[0]), "uar_2clip": two[0] if clips2 is None else float(two[0][0]),
              "war_2clip": two[1] if clips2 is None else float(two[1][0]), "num_test_clips": len(clips["index"]),
              "skipped_test_clips": [], "seed": seed, "predictions": clips, "predictions_2clip": clips2,
              "intervals": {"level": 0.95, "uar": ci["uar"], "war": ci["war"]},
              **result_stamp(dataset, res, fold, f"train.seed={seed}", *overrides)}
    (folder / "config.yaml").write_text(f"data: {{dataset: {dataset}, resolution: {res}, fold: {fold}}}\n"
                                        f"train: {{seed: {seed}}}\n")
    (folder / "result.json").write_text(json.dumps(result))
    return result


# -- the statistics --------------------------------------------------------------------------

def test_one_class_interval_matches_scipy_bootstrap_and_the_binomial_closed_form():
    from scipy.stats import bootstrap

    clips = predictions(0.7, 600, num_classes=1)
    correct = 100.0 * (np.array(clips["pred"]) == np.array(clips["label"]))
    ours = stats.mean_intervals([(clips["label"], [clips["pred"]])], resamples=20000)
    theirs = bootstrap((correct,), np.mean, confidence_level=0.95, n_resamples=20000, method="percentile",
                       random_state=np.random.default_rng(1)).confidence_interval
    p = correct.mean() / 100
    half = 100 * Z95 * np.sqrt(p * (1 - p) / len(correct))
    for metric in ("uar", "war"):  # one class: UAR is WAR, and stratification changes nothing
        assert ours[metric] == pytest.approx([theirs.low, theirs.high], abs=0.4)
        assert ours[metric] == pytest.approx([100 * p - half, 100 * p + half], abs=0.5)


def test_stratified_interval_matches_the_closed_form_of_a_known_classifier():
    sizes = np.array([500, 300, 800, 200, 400, 150, 650])
    acc = np.array([0.9, 0.5, 0.8, 0.3, 0.6, 0.2, 0.7])
    clips = predictions(acc, sizes)
    labels, preds = np.array(clips["label"]), np.array(clips["pred"])
    p = np.array([(preds[labels == c] == c).mean() for c in range(7)])  # the sample's recalls
    uar, war = stats.scores(labels, preds)
    from mma_dfer.inference.metrics import uar_war

    assert (uar[0], war[0]) == pytest.approx(uar_war(labels, preds, 7))  # the same UAR/WAR as evaluation's
    # with class sizes fixed, per-class hits are binomial: the variances in closed form
    sd_uar = 100 / 7 * np.sqrt((p * (1 - p) / sizes).sum())
    sd_war = 100 * np.sqrt((sizes * p * (1 - p)).sum()) / sizes.sum()
    ci = stats.mean_intervals([(labels, [preds])], resamples=20000)
    for metric, point, sd in (("uar", uar[0], sd_uar), ("war", war[0], sd_war)):
        low, high = ci[metric]
        assert (low + high) / 2 == pytest.approx(point, abs=0.15)
        assert (high - low) / 2 == pytest.approx(Z95 * sd, rel=0.06)


def test_the_interval_narrows_as_the_test_set_grows_and_is_reproducible():
    width = {}
    for n in (40, 400, 4000):
        clips = predictions(0.65, n)
        ci = stats.mean_intervals([(clips["label"], [clips["pred"]])])
        width[n] = ci["uar"][1] - ci["uar"][0]
    assert width[40] > width[400] > width[4000]
    assert width[40] / width[4000] == pytest.approx(10, rel=0.2)  # 1/sqrt(n)
    clips = predictions(0.65, 100)
    one = stats.mean_intervals([(clips["label"], [clips["pred"]])], seed=3)
    assert one == stats.mean_intervals([(clips["label"], [clips["pred"]])], seed=3)  # seeded: to the digit
    assert one != stats.mean_intervals([(clips["label"], [clips["pred"]])], seed=4)


def test_a_paired_difference_of_a_variant_with_itself_is_centred_on_zero():
    folds = [predictions(0.6, 120, seed=f) for f in range(3)]
    same = stats.paired_difference([(c["label"], [c["pred"]], [c["pred"]]) for c in folds])
    for metric in ("uar", "war"):
        assert same[metric] == {"delta": 0.0, "ci": [0.0, 0.0], "significant": False}
    # two classifiers of one accuracy (other draws): centred near zero, the interval spans it
    other = [predictions(0.6, 120, seed=10 + f) for f in range(3)]
    noise = stats.paired_difference([(a["label"], [b["pred"]], [a["pred"]]) for a, b in zip(folds, other)])
    assert noise["uar"]["ci"][0] < 0 < noise["uar"]["ci"][1] and not noise["uar"]["significant"]
    assert abs(noise["uar"]["delta"]) < 4
    # a clearly better variant: the interval excludes zero
    better = [predictions(0.8, 120, seed=20 + f) for f in range(3)]
    diff = stats.paired_difference([(a["label"], [b["pred"]], [a["pred"]]) for a, b in zip(folds, better)])
    assert diff["uar"]["significant"] and diff["uar"]["ci"][0] > 0 and diff["uar"]["delta"] > 10


def test_the_verdict_for_a_paper_value_inside_and_outside():
    assert stats.verdict(66.6, [65.0, 67.0]) == "inside"
    assert stats.verdict(65.0, [65.0, 67.0]) == "inside"  # the ends belong to the interval
    assert stats.verdict(67.5, [65.0, 67.0]) == "above"
    assert stats.verdict(64.0, [65.0, 67.0]) == "below"
    assert stats.verdict(None, [65.0, 67.0]) is None and stats.verdict(66.0, None) is None


def test_stats_imports_no_torch():
    code = "import sys, mma_dfer.stats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


# -- result.json --------------------------------------------------------------------------------

def test_result_json_keeps_its_keys_and_gains_predictions_and_intervals():
    from mma_dfer.config import load_config
    from mma_dfer.runs.results import make_result

    cfg = load_config(None, ["data.dataset=dfew", "data.fold=2", "train.seed=3", "eval.ci_resamples=500"])
    clips = predictions(0.6, 30)
    probs = np.eye(7, dtype=np.float32)[clips["pred"]]  # evaluate()'s output: softmax rows by dataset index
    ev = {"uar": 1.0, "war": 2.0, "confusion": [[0]], "num_clips": 210, "skipped": [],
          "indices": np.array(clips["index"]), "probs": probs, "labels": np.array(clips["label"])}
    result = make_result(cfg, {1: ev, 2: ev}, 25, config_fingerprint="ab" * 8)
    for key in ("dataset", "fold", "resolution", "epoch", "uar", "war", "uar_2clip", "war_2clip", "num_test_clips",
                "skipped_test_clips", "confusion_matrix", "confusion_matrix_2clip", "class_names", "git_commit",
                "versions", "name", "config_fingerprint"):
        assert key in result, key
    assert result["predictions"] == clips and result["seed"] == 3
    json.dumps(result)  # plain JSON
    iv = result["intervals"]
    assert (iv["level"], iv["resamples"], iv["seed"]) == (0.95, 500, 0)
    expected = stats.mean_intervals([(clips["label"], [clips["pred"]])], 0.95, 500, 0)
    assert iv["uar"] == expected["uar"] and iv["war"] == expected["war"] and iv["uar_2clip"] == expected["uar"]


# -- seeds as a sweep axis ---------------------------------------------------------------------

def test_seeds_fan_out_in_sweeps_submit_and_the_sweep_task(tmp_path):
    from mma_dfer.cluster import submit
    from mma_dfer.experiments.sweep import SweepError, parse_sweep

    sweep = restrict(load_sweep("table2"), seeds=[1, 2, 3])
    runs = expand(sweep, tmp_path)
    assert len(runs) == 5 * 3
    mtm = [r for r in runs if r.variant == "mtm"]
    assert [Path(r.output_dir).relative_to(tmp_path).as_posix() for r in mtm] == \
        [f"table2/mtm/dfew/res160/fold1/seed{s}" for s in (1, 2, 3)]
    assert [r.overrides[3] for r in mtm] == ["train.seed=1", "train.seed=2", "train.seed=3"]
    with pytest.raises(SweepError, match="would override"):
        expand(sweep, tmp_path, extra=["train.seed=7"])
    # a sweep file's seeds and reference; the copy next to the runs merges the seeds
    data = {"variants": {"a": {}, "b": {"set": {"model.ita_dim": 64}}}, "seeds": "1-2", "reference": "a"}
    parsed = parse_sweep(data, "x.yaml", "x")
    assert (parsed.seeds, parsed.reference) == ([1, 2], "a")
    with pytest.raises(SweepError, match="reference='c' is not one of the variants"):
        parse_sweep({**data, "reference": "c"}, "x.yaml", "x")
    write_definition(parsed, tmp_path)
    write_definition(restrict(parsed, seeds=[5]), tmp_path)
    assert load_sweep(tmp_path / "x/sweep.yaml").seeds == [1, 2, 5]
    # launch/submit.py --seeds: the grid once per seed, each into its seed folder
    args = submit.parser().parse_args(["--seeds", "1,2", "--folds", "3", "--resolutions", "112"])
    planned = submit._grid(args, tmp_path)
    assert [(m["fold"], m["seed"]) for m, _ in planned] == [(3, 1), (3, 2)]
    assert [j.output_dir for _, j in planned] == [str(tmp_path / f"dfew/res112/fold3/seed{s}") for s in (1, 2)]
    assert "train.seed=2" in planned[1][1].overrides and planned[1][1].make_config().train.seed == 2
    assert submit.main(["--seeds", "x", "--runs-root", str(tmp_path)]) == 2
    # slurm/sweep.sh's task: SEED and the variant's root above fold<k>/seed<s>/
    task = subprocess.run([sys.executable, "-m", "mma_dfer.experiments.sweep", "task", "table2", "4", "--seeds", "1,2",
                           "--runs-root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert task.returncode == 0, task.stderr
    fields = dict(line.split("=", 1) for line in task.stdout.splitlines())
    assert fields["TOTAL"] == "10" and fields["SEED"] == "1" and fields["VARIANT"] == "ita256"
    assert fields["VARIANT_ROOT"].strip("'") == str(tmp_path / "table2/ita256")


# -- the aggregator -----------------------------------------------------------------------------

def aggregate(*args):
    return subprocess.run([sys.executable, str(ROOT / "launch/aggregate.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_seeds_aggregate_with_their_spread_beside_the_fold_spread(tmp_path):
    results = {}
    for fold in (1, 2):
        for seed in (1, 2, 3):
            clips = predictions(0.55 + 0.05 * seed, 40, seed=10 * fold + seed)
            results[fold, seed] = write_result(tmp_path / f"dfew/res160/fold{fold}/seed{seed}", "dfew", 160, fold,
                                               clips, clips, seed=seed)
    proc = aggregate(tmp_path, "--folds", "1-2", "--seeds", "1-3", "--json", tmp_path / "a.json", "--csv",
                     tmp_path / "a.csv", "--ci-resamples", "500")
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "a.json").read_text())["dfew"]["160"]
    assert row["seeds"] == [1, 2, 3] and row["complete"] and row["missing_runs"] == []
    assert sorted(row["runs"]) == [f"{f}/seed{s}" for f in (1, 2) for s in (1, 2, 3)]
    fold_means = [statistics.fmean(results[f, s]["uar"] for s in (1, 2, 3)) for f in (1, 2)]
    seed_means = [statistics.fmean(results[f, s]["uar"] for f in (1, 2)) for s in (1, 2, 3)]
    assert row["folds"]["1"]["uar"] == pytest.approx(fold_means[0])
    assert row["uar_mean"] == pytest.approx(statistics.fmean(fold_means))
    assert row["uar_std"] == pytest.approx(statistics.stdev(fold_means))
    assert row["uar_seed_std"] == pytest.approx(statistics.stdev(seed_means))
    low, high = row["uar_ci"]
    assert low < row["uar_mean"] < high and row["uar_2clip_ci"] == row["uar_ci"]
    assert row["ci_settings"]["resamples"] == 500
    # the runs' own intervals come from their result files; a fold's from its seeds together
    assert row["runs"]["2/seed3"]["uar_ci"] == results[2, 3]["intervals"]["uar"]
    assert row["folds"]["1"]["uar_ci"][0] < fold_means[0] < row["folds"]["1"]["uar_ci"][1]
    assert "seed std UAR/WAR" in proc.stdout and "| 1,2,3 |" in proc.stdout
    table = list(csv.reader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert table[0][:7] == ["dataset", "resolution", "fold", "uar", "war", "uar_2clip", "war_2clip"]
    assert table[0][7:] == ["seed", *[f"{m}_ci_{e}" for m in ("uar", "war", "uar_2clip", "war_2clip")
                                      for e in ("low", "high")], "uar_verdict", "war_verdict", "uar_2clip_verdict",
                            "war_2clip_verdict"]
    lines = {r[2]: r for r in table[1:]}
    assert float(lines["seed_std"][3]) == pytest.approx(row["uar_seed_std"])
    assert [float(x) for x in lines["mean"][8:10]] == row["uar_ci"]
    assert lines["1/seed2"][7] == "2" and lines["paper"][-4] == row["verdict"]["uar"]
    # a seed that has not run yet: the row is incomplete (exit 3) and names it
    (tmp_path / "dfew/res160/fold2/seed3/result.json").unlink()
    proc = aggregate(tmp_path, "--folds", "1-2", "--seeds", "1-3", "--json", tmp_path / "b.json")
    assert proc.returncode == 3
    assert json.loads((tmp_path / "b.json").read_text())["dfew"]["160"]["missing_runs"] == ["2/seed3"]
    assert aggregate(tmp_path, "--seeds", "one").returncode == 2


@pytest.mark.parametrize("accuracy, expected", [(0.3, "above"), (0.95, "below")])
def test_table1_cells_say_where_the_papers_number_lies(tmp_path, accuracy, expected):
    for fold in range(1, 6):
        write_result(tmp_path / f"dfew/res160/fold{fold}", "dfew", 160, fold, predictions(accuracy, 300, seed=fold))
    row = collect(tmp_path)["dfew"]["160"]
    assert row["verdict"]["uar"] == expected == row["verdict"]["war"]  # paper: 66.61 / 77.15
    assert row["verdict"]["uar_2clip"] is None  # no 2-clip predictions, no interval, no verdict
    # inside: a classifier right on the paper's UAR
    for fold in range(1, 6):
        write_result(tmp_path / f"dfew/res160/fold{fold}", "dfew", 160, fold, predictions(0.6661, 300, seed=fold))
    row = collect(tmp_path)["dfew"]["160"]
    assert row["verdict"]["uar"] == "inside", (row["uar_ci"], row["uar_mean"])


# -- the report ----------------------------------------------------------------------------------

def test_report_shows_intervals_verdicts_seed_spread_and_paired_differences_in_chromium(tmp_path):
    from tests import browser
    from tests.test_report import cells_of, report
    from tests.test_sweep import looks_drawn, save_shot

    runs = tmp_path / "runs"
    t1 = restrict(load_sweep("table1"), datasets=["dfew"], resolutions=[160])
    write_definition(t1, runs)
    for fold in range(1, 6):
        clips = predictions([0.9, 0.5, 0.8, 0.3, 0.6, 0.4, 0.7], 60, seed=fold)
        write_result(runs / f"table1/mma/dfew/res160/fold{fold}", "dfew", 160, fold, clips, clips)
    # Table 2 with two seeds: ITA-128 clearly worse than the reference (MTM), ITA-64 its twin
    t2 = restrict(load_sweep("table2"), seeds=[1, 2])
    write_definition(t2, runs)
    sets = {v.name: [f"{k}={x}" for k, x in v.overrides.items()] for v in t2.variants}
    for seed in (1, 2):
        mtm = predictions(0.65, 80, seed=seed)
        write_result(runs / f"table2/mtm/dfew/res160/fold1/seed{seed}", "dfew", 160, 1, mtm, seed=seed)
        write_result(runs / f"table2/ita64/dfew/res160/fold1/seed{seed}", "dfew", 160, 1, mtm, seed=seed,
                     overrides=sets["ita64"])
        write_result(runs / f"table2/ita128/dfew/res160/fold1/seed{seed}", "dfew", 160, 1,
                     predictions(0.45, 80, seed=seed + 5), seed=seed, overrides=sets["ita128"])
    out = tmp_path / "report.html"
    proc = report(runs, out)
    assert proc.returncode == 0, proc.stderr
    c = cells_of(out).cells
    key = "table1/mma/dfew/res160/uar"
    row = collect(runs / "table1/mma")["dfew"]["160"]
    assert c[f"{key}_mean_ci"] == f"95% CI [{row['uar_ci'][0]:.2f}, {row['uar_ci'][1]:.2f}]"
    assert c[f"{key}_paper_verdict"] == row["verdict"]["uar"] and c[f"{key}_paper"] == "66.61"
    assert c[f"{key}_mean"].startswith(f"{row['uar_mean']:.2f} ± ")  # the mean's own text as before
    assert "table1/mma/dfew/res160/war_2clip_mean_ci" in c
    # Table 2: seeds' spread; the differences from MTM with their paired interval
    assert c["table2/mtm/dfew/res160/uar_mean_seeds"].endswith("(2 seeds)")
    assert c["table2/mtm/dfew/res160/uar_diff"] == "reference"
    assert c["table2/ita64/dfew/res160/uar_diff"] == "+0.00 [0.00, 0.00]"
    worse = c["table2/ita128/dfew/res160/uar_diff"]
    assert worse.startswith("-") and worse.endswith(" *"), worse
    assert c["table2/ita256/dfew/res160/uar_diff"] == "—"  # not run
    text = out.read_text()
    assert "table2/mtm/dfew/res160/fold1/seed2" in text  # each seed's run has its section
    assert "<td class=num>1 · seed 2</td>" in text  # a missing seed is listed as such
    with browser.page(1400, 1000) as (pg, console, requests):
        pg.goto(out.as_uri())
        pg.wait_for_load_state("load")
        shot = save_shot(pg, "report-intervals.png", full_page=True)
        assert looks_drawn(shot)
        assert console == [] and requests == [out.as_uri()], (console, requests)
        dom = dict(pg.eval_on_selector_all("[data-key]", "els => els.map(e => [e.dataset.key, e.textContent])"))
        for k in (f"{key}_mean", f"{key}_mean_ci", f"{key}_paper", f"{key}_paper_verdict",
                  "table2/mtm/dfew/res160/uar_mean", "table2/mtm/dfew/res160/uar_mean_seeds"):
            assert dom[k] == c[k], k  # each data-key's own text: the number, the interval under it apart
        verdict = pg.locator(f'[data-key="{key}_paper_verdict"]')
        assert verdict.is_visible() and verdict.inner_text() == row["verdict"]["uar"]
        sig = pg.locator('[data-key="table2/ita128/dfew/res160/uar_diff"]')
        assert sig.is_visible() and int(sig.evaluate("e => parseInt(getComputedStyle(e).fontWeight)")) >= 700
        header = pg.locator("#table2 ~ table").first.locator("tr").first.inner_text()
        assert "UAR − mtm" in header and "WAR − mtm" in header
        # error bars: the figures draw the intervals (capped bars in the SVG)
        assert pg.locator("figure svg").count() >= 2


def test_slurm_sweep_runs_each_seed_into_its_folder(tmp_path):
    """slurm/sweep.sh with SEEDS: task i of the seed-expanded sweep reaches all_folds.sh's srun
    with its seed's folder and train.seed (srun faked: it records its command line)."""
    import os

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/bin/sh\necho "$@" > "$SRUN_ARGS"\n')
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_ARRAY_TASK_ID": "3", "SEEDS": "1 2", "RUNS_ROOT": str(tmp_path / "runs"),
           "VENV": str(tmp_path / "no-venv"), "MMA_DFER_HOME": str(ROOT), "SRUN_ARGS": str(tmp_path / "args")}
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_MIN"):
        env.pop(var, None)
    proc = subprocess.run(["bash", str(ROOT / "slurm/sweep.sh"), "table2"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "task 3 of 10: variant ita128, dfew fold 1 res 160 seed 2" in proc.stdout
    args = (tmp_path / "args").read_text()
    assert f"output_dir={tmp_path / 'runs'}/table2/ita128/dfew/res160/fold1/seed2" in args
    assert "train.seed=2" in args and "model.ita_dim=128" in args
