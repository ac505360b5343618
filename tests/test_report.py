"""launch/report.py on hand-made runs: the paper's layouts, our numbers beside the paper's with
the difference, missing and failed runs listed, one self-contained page, its exit codes."""
import json
import statistics
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from mma_dfer.experiments.sweep import load_sweep, restrict, write_definition
from mma_dfer.experiments.collect import read_curves
from tests.conftest import ROOT, result_stamp


class Cells(HTMLParser):
    """data-key -> text of every number cell, and the tags and attributes the page uses."""

    def __init__(self, text):
        super().__init__()
        self.cells, self.tags, self.urls, self.attrs, self._key = {}, set(), [], set(), None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        self.attrs |= set(attrs)
        self.urls += [attrs[a] for a in ("src", "href") if a in attrs and tag != "svg"]
        self._key = attrs.get("data-key")
        if self._key:
            self.cells[self._key] = ""

    def handle_data(self, data):
        if self._key:
            self.cells[self._key] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None


def cells_of(path):
    return Cells(path.read_text())


def write_run(folder, dataset, res, fold, uar, war, uar2=None, war2=None, cm=None, log=None, overrides=()):
    folder.mkdir(parents=True, exist_ok=True)
    names = {"dfew": ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]}.get(dataset)
    result = {"dataset": dataset, "fold": fold, "resolution": res, "epoch": 25, "uar": uar, "war": war,
              "uar_2clip": uar2, "war_2clip": war2, "num_test_clips": 10, "skipped_test_clips": [],
              "confusion_matrix": cm, "confusion_matrix_2clip": None, "class_names": names,
              "trainable_params": 7556639, **result_stamp(dataset, res, fold, *overrides)}
    (folder / "config.yaml").write_text(f"data: {{dataset: {dataset}, resolution: {res}, fold: {fold}}}\n")
    (folder / "result.json").write_text(json.dumps(result))
    if log:
        (folder / "log.jsonl").write_text("\n".join(json.dumps(x) for x in log) + "\n")
    return result


def report(root, out):
    return subprocess.run([sys.executable, str(ROOT / "launch/report.py"), str(root), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)


def test_table1_ablation_missing_and_failed_runs(tmp_path):
    runs = tmp_path / "runs"
    # Table 1: DFEW at 160, folds 1-4 done, fold 5 failed (config.yaml, no result)
    t1 = restrict(load_sweep(ROOT / "configs/sweeps/table1.yaml"), datasets=["dfew"], resolutions=[160])
    write_definition(t1, runs)
    uars, wars = [65.0, 66.0, 67.5, 68.0], [76.0, 77.0, 78.0, 77.5]
    for f in range(4):
        write_run(runs / f"table1/mma/dfew/res160/fold{f + 1}", "dfew", 160, f + 1, uars[f], wars[f],
                  uars[f] - 0.5, wars[f] + 0.25)
    failed = runs / "table1/mma/dfew/res160/fold5"
    failed.mkdir(parents=True)
    (failed / "config.yaml").write_text("data: {dataset: dfew, resolution: 160, fold: 5}\n")
    (failed / "log.jsonl").write_text(json.dumps({"step": 1170, "train/loss": 0.9}) + "\n")
    # Table 4: two of its seven variants, fold 1
    write_definition(load_sweep(ROOT / "configs/sweeps/table4.yaml"), runs)
    cm = [[3, 1, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0],
          [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0]]
    log = [{"step": 10, "train/loss": 2.0, "train/lr": 1e-4}, {"step": 20, "train/loss": 1.5, "train/lr": 1e-4},
           {"step": 20, "epoch": 1, "test/uar": 40.0, "test/war": 50.0},
           {"step": 40, "epoch": 2, "test/uar": 55.0, "test/war": 60.0}]
    full = write_run(runs / "table4/full/dfew/res160/fold1", "dfew", 160, 1, 66.0, 78.5, cm=cm, log=log)
    write_run(runs / "table4/plain/dfew/res160/fold1", "dfew", 160, 1, 55.25, 67.0)
    out = tmp_path / "report.html"
    proc = report(runs, out)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "failed: table1/mma/dfew/res160/fold5" in proc.stdout
    page = cells_of(out)
    c = page.cells
    # Table 1: mean ± sample std over the 4 folds present, flagged; the paper's number; the difference
    key = "table1/mma/dfew/res160/uar"
    assert c[f"{key}_mean"] == f"{statistics.fmean(uars):.2f} ± {statistics.stdev(uars):.2f} (4/5 folds)"
    assert c[f"{key}_paper"] == "66.61" and c[f"{key}_delta"] == f"{statistics.fmean(uars) - 66.61:+.2f}"
    assert c["table1/mma/dfew/res160/war_2clip_paper"] == "77.10"
    assert c["table1/mma/dfew/res160/uar_2clip_mean"].startswith(f"{statistics.fmean(uars) - 0.5:.2f} ± ")
    assert c["table1/mma/dfew/res160/fold3/uar|war"] == "67.50 / 78.00"
    # Table 4 in the paper's layout: paper numbers beside ours, difference, parameter count
    assert c["table4/full/dfew/res160/paper_uar"] == "66.52" and c["table4/full/dfew/res160/uar_mean"] == "66.00"
    assert c["table4/full/dfew/res160/uar_delta"] == "-0.52" and c["table4/full/dfew/res160/war_delta"] == "+0.58"
    assert c["table4/plain/dfew/res160/paper_war"] == "68.43" and c["table4/plain/dfew/res160/war_mean"] == "67.00"
    assert c["table4/pr/dfew/res160/uar_mean"] == "—"
    assert c["table4/full/dfew/res160/trainable_params"] == "7.56"
    # per-class recall from the confusion matrix (a class without test clips has none)
    run = "table4/full/dfew/res160/fold1"
    assert c[f"{run}/recall/happy"] == "75.00" and c[f"{run}/recall/neutral"] == "50.00"
    assert c[f"{run}/recall/surprise"] == "—" and c[f"{run}/recall/fear"] == "0.00"
    text = out.read_text()
    # missing (5 variants of Table 4 and the failed fold) are listed, none dropped
    assert "Missing or failed runs (6)" in text and "last logged step 1170" in text
    for v in ("pr", "pr_prpr", "pr_prpr_mtt", "pr_prpr_fb", "mtt_fb"):
        assert f"<td>table4/{v}</td>" in text
    # self-contained: inline SVG figures, no script, nothing fetched
    assert text.count("<svg") >= 4 and "script" not in page.tags and "link" not in page.tags
    assert all(u.startswith("#") for u in page.urls), page.urls
    assert full["uar"] == 66.0


def test_runs_outside_sweeps_form_table1_and_errors_exit_2(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "mafw/res224/fold2", "mafw", 224, 2, 44.0, 58.0)
    out = tmp_path / "r.html"
    assert report(runs, out).returncode == 0
    c = cells_of(out).cells
    assert c["runs outside any sweep/mafw/res224/uar_mean"] == "44.00 (1/5 folds)"
    assert c["runs outside any sweep/mafw/res224/uar_paper"] == "44.11"
    assert report(tmp_path / "absent", out).returncode == 2


def test_a_corrupt_or_mixed_run_does_not_block_the_page(tmp_path):
    # thirty runs' page is not lost to one broken file: it is a failed run with its reason; folds
    # of different configs get no mean but a visible warning row naming the fields
    runs = tmp_path / "runs"
    for f in (1, 2, 3):
        write_run(runs / f"mafw/res224/fold{f}", "mafw", 224, f, 44.0, 58.0)
    (runs / "mafw/res224/fold2/result.json").write_text("{broken")
    write_run(runs / "dfew/res160/fold1", "dfew", 160, 1, 60.0, 70.0)
    write_run(runs / "dfew/res160/fold2", "dfew", 160, 2, 80.0, 90.0, overrides=["model.fusion=none"])
    (runs / "stray").mkdir()
    (runs / "stray/result.json").write_text("[]")  # no config.yaml: belongs to no run
    out = tmp_path / "r.html"
    proc = report(runs, out)
    assert proc.returncode == 0, proc.stderr
    assert "failed: runs outside any sweep/mafw/res224/fold2" in proc.stdout and "corrupt result file" in proc.stdout
    page = cells_of(out)
    assert page.cells["runs outside any sweep/mafw/res224/uar_mean"] == "44.00 ± 0.00 (2/5 folds)"
    assert page.cells["runs outside any sweep/dfew/res160/uar_mean"] == "—"
    text = out.read_text()
    assert "not averaged: dfew res 160: its folds were made by different configs" in text
    assert "model.fusion: &quot;bottleneck&quot; in fold 1, &quot;none&quot; in fold 2" in text
    assert f"{runs / 'stray/result.json'}: corrupt result file" in text and "not averaged: dfew res 160" in proc.stdout


PAYLOAD = '<img src=x onerror="alert(1)">'


def test_every_string_from_a_file_or_folder_is_escaped(tmp_path):
    # a payload in every field of result.json the page shows, in a folder name and in a variant
    # folder of a sweep: the page must show them as text, never as elements or attributes
    runs = tmp_path / "runs"
    write_definition(restrict(load_sweep(ROOT / "configs/sweeps/table4.yaml"), datasets=["dfew"]), runs)
    folder = runs / f"table4/{PAYLOAD}/dfew/res160/fold1"
    result = write_run(folder, "dfew", 160, 1, 50.0, 60.0, cm=[[1] * 7 for _ in range(7)])
    result.update(class_names=[f"{PAYLOAD}{i}" for i in range(7)], skipped_test_clips=[PAYLOAD],
                  precision=PAYLOAD, epoch=PAYLOAD, num_test_clips=PAYLOAD, name=PAYLOAD)
    (folder / "result.json").write_text(json.dumps(result))
    loose = runs / PAYLOAD / "mafw/res112/fold3"
    write_run(loose, "mafw", 112, 3, 40.0, 50.0)
    bad = json.loads((loose / "result.json").read_text())
    (loose / "result.json").write_text(json.dumps({**bad, "dataset": f"mafw{PAYLOAD}"}))  # corrupt: shown as such
    (runs / PAYLOAD / "mafw/res112/fold4").mkdir(parents=True)
    (runs / PAYLOAD / "mafw/res112/fold4/config.yaml").write_text("data: {dataset: mafw, resolution: 112, fold: 4}\n")
    (runs / PAYLOAD / "mafw/res112/fold4/log.jsonl").write_text(json.dumps({"step": PAYLOAD, "epoch": PAYLOAD}) + "\n")
    out = tmp_path / "r.html"
    proc = report(runs, out)
    assert proc.returncode == 0, proc.stderr
    page = cells_of(out)
    assert "img" not in page.tags and "script" not in page.tags
    assert not any(a.startswith("on") for a in page.attrs), page.attrs
    text = out.read_text()
    assert PAYLOAD not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


def test_curves_keep_the_last_value_of_a_repeated_step_and_count_in_epochs(tmp_path):
    lines = [{"step": 5, "train/loss": 3.0, "train/lr": 1.0}, {"step": 10, "train/loss": 2.0, "train/lr": 1.0},
             {"step": 10, "epoch": 1, "test/uar": 20.0, "test/war": 30.0},
             {"step": 10, "train/loss": 1.0, "train/lr": 1.0},  # resumed: step 10 again
             {"step": 20, "epoch": 2, "test/uar": 40.0, "test/war": 45.0, "test/uar_2clip": 41.0}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    steps, evals = read_curves(tmp_path)
    assert steps["unit"] == "epoch" and steps["x"] == [0.5, 1.0] and steps["loss"] == [3.0, 1.0]
    assert evals == {"x": [1, 2], "uar": [20.0, 40.0], "war": [30.0, 45.0]}


@pytest.mark.parametrize("bad, message", [
    ({"variants": {"a": {"set": {"model.fusion_dimm": 3}}}}, "variant 'a'.*unknown config key 'model.fusion_dimm'"),
    ({"variants": {"a": {"sett": {}}}}, "unknown key\\(s\\) \\['sett'\\] in variant 'a'"),
    ({"columns": ["x", "y"], "variants": {"a": {"row": ["+"]}}}, "variant 'a' has 1 row labels for 2 columns"),
    ({"folds": "one", "variants": {"a": {}}}, "folds='one' is not a list of integers"),
    ({"variants": {"a/b": {}}}, "variant name 'a/b' must be a folder name"),
    ({"variants": {"a": {"paper": {"uar": 1}}}}, "paper must give uar and war"),
])
def test_bad_sweep_files_are_errors_naming_the_file(tmp_path, bad, message):
    import yaml

    from mma_dfer.experiments.sweep import SweepError, expand

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"datasets": ["dfew"], **bad}))
    with pytest.raises(SweepError, match=f"{path}: .*{message}"):
        expand(load_sweep(path), tmp_path / "runs")
