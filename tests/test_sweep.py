"""Sweeps end to end on CPU: every sweep file expands to valid configs; a Table 4 sweep of the
tiny model on generated data (2 variants x 2 folds, 2 epochs: conftest's ``cpu_sweep``) through
submitit's debug executor; its report and one run's TensorBoard opened in headless Chromium, as a
person sees them."""
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from mma_dfer.experiments.sweep import expand, load_sweep
from tests import browser
from tests.conftest import CPU_SWEEP_VARIANTS as VARIANTS
from tests.conftest import ROOT

SWEEPS = sorted((ROOT / "configs/sweeps").glob("*.yaml"))
SHOTS = Path(os.environ.get("MMA_DFER_SCREENSHOTS", ""))  # keep the screenshots here when set


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_expands_to_valid_configs(path, tmp_path):
    sweep = load_sweep(path)
    runs = expand(sweep, tmp_path)
    assert len(runs) == len(sweep.variants) * len(sweep.datasets) * len(sweep.resolutions) * len(sweep.folds)
    assert {Path(r.output_dir).relative_to(tmp_path).parts[:2] for r in runs} == \
        {(sweep.name, v.name) for v in sweep.variants}
    if sweep.layout == "ablation":  # the paper's table: a row label per column and its numbers
        assert all(len(v.row) == len(sweep.columns) and v.paper for v in sweep.variants)
        assert (sweep.datasets, sweep.folds, sweep.resolutions) == (["dfew"], [1], [160])
    else:
        assert (sweep.folds, sweep.resolutions) == ([1, 2, 3, 4, 5], [112, 160, 224])


def test_command_line_cannot_undo_a_variant_and_copies_merge_their_grids(tmp_path):
    from mma_dfer.experiments.sweep import SweepError, restrict, write_definition

    sweep = load_sweep(ROOT / "configs/sweeps/table4.yaml")
    with pytest.raises(SweepError, match="--set \\['model.fusion'\\] would override what variant 'plain' sets"):
        expand(sweep, tmp_path, extra=["model.fusion=bottleneck"])
    with pytest.raises(SweepError, match="no variant 'nope'"):
        expand(sweep, tmp_path, variants=["nope"])
    write_definition(restrict(sweep, folds=[1]), tmp_path)
    write_definition(restrict(sweep, folds=[2], resolutions=[32]), tmp_path)
    copy = load_sweep(tmp_path / "table4/sweep.yaml")
    assert (copy.name, copy.folds, copy.resolutions) == ("table4", [1, 2], [32, 160])
    assert [(v.name, v.row, v.paper, v.overrides) for v in copy.variants] == \
        [(v.name, v.row, v.paper, v.overrides) for v in sweep.variants]


def save_shot(pg, name, **kw):
    if SHOTS.parts:
        SHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SHOTS / name), **kw)
    return pg.screenshot(**kw)


def looks_drawn(png: bytes) -> bool:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # text, tables and figures, not a blank page


def results(runs):
    return {p.parent.relative_to(runs).as_posix(): json.loads(p.read_text()) for p in runs.rglob("result.json")}


@pytest.mark.slow
def test_sweep_fans_out_skips_finished_runs_and_aggregates_per_variant(cpu_sweep):
    runs, cmd, env, out = cpu_sweep
    assert out.count("submitted job") == 4 and out.count(" done: UAR ") == 4
    found = results(runs)
    assert sorted(found) == sorted(f"table4/{v}/dfew/res32/fold{f}" for v in VARIANTS for f in (1, 2))
    # each run folder has its resolved config with the variant's switches
    plain = yaml.safe_load((runs / "table4/plain/dfew/res32/fold2/config.yaml").read_text())["model"]
    assert (plain["num_prompts"], plain["prompt_updates"], plain["temporal"], plain["fusion"]) == (0, 0, "mean", "none")
    full = yaml.safe_load((runs / "table4/full/dfew/res32/fold1/config.yaml").read_text())["model"]
    assert (full["num_prompts"], full["temporal"], full["fusion"]) == (2, "mtt", "bottleneck")  # configs/tiny.yaml
    params = {k.split("/")[1]: r["trainable_params"] for k, r in found.items()}
    assert params["plain"] < params["full"]
    # the definition beside the runs, with the grid that ran; the manifest names sweep and variant
    copy = load_sweep(runs / "table4/sweep.yaml")
    assert (copy.folds, copy.resolutions, len(copy.variants)) == ([1, 2], [32], 7)
    manifest = json.loads((runs / "submit_manifest.json").read_text())
    assert {(e["sweep"], e["variant"], e["fold"]) for e in manifest} == \
        {("table4", v, f) for v in VARIANTS for f in (1, 2)}
    status = subprocess.run([sys.executable, str(ROOT / "launch/submit.py"), "--status", "--runs-root", str(runs)],
                            cwd=ROOT, capture_output=True, text=True)
    assert status.stdout.count("COMPLETED (result.json)") == 4 and "table4/plain dfew res32 fold2" in status.stdout
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to submit" in again.stdout and again.stdout.count("skip table4/") == 4
    # validated every epoch: the test metrics per epoch in the log, the last one the result's
    lines = [json.loads(x) for x in (runs / "table4/full/dfew/res32/fold1/log.jsonl").read_text().splitlines()]
    tests = [(x["epoch"], x["test/uar"]) for x in lines if "test/uar" in x]
    assert [e for e, _ in tests] == [1, 2] and tests[-1][1] == found["table4/full/dfew/res32/fold1"]["uar"]
    # the aggregator, unchanged, reads one variant's folder
    agg = subprocess.run([sys.executable, str(ROOT / "launch/aggregate.py"), str(runs / "table4/full"),
                          "--folds", "1-2"], capture_output=True, text=True)
    assert agg.returncode == 0 and "| 32 |" in agg.stdout


@pytest.mark.slow
def test_report_of_the_sweep_in_chromium(cpu_sweep, tmp_path):
    from mma_dfer.figures import per_class_recall

    runs = cpu_sweep[0]
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, str(ROOT / "launch/report.py"), str(runs), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "14 runs (4 done, 0 failed, 10 missing)" in proc.stdout  # 5 variants of Table 4 not run, 2 folds each
    found = results(runs)
    definition = load_sweep(runs / "table4/sweep.yaml")
    with browser.page() as (pg, console, requests):
        pg.goto(out.as_uri())
        pg.wait_for_load_state("load")
        shot = save_shot(pg, "report.png", full_page=True)
        assert looks_drawn(shot)
        assert console == [], console
        assert requests == [out.as_uri()], requests  # self-contained: nothing else is fetched
        assert pg.get_by_role("heading", name="Table 4. Ablation studies").is_visible()
        assert pg.get_by_role("heading", name="Missing or failed runs (10)").is_visible()
        assert pg.locator("table").count() == 2 + 4  # the ablation, the missing runs; recall per run
        figure = pg.locator("figure svg").first
        assert figure.is_visible() and figure.bounding_box()["width"] > 500
        header = pg.locator("table").first.locator("tr").first.inner_text()
        for column in ("Pr.", "Pr.Pr.", "MTT", "FB", "paper UAR", "UAR ours", "Δ UAR"):
            assert column in header
        cells = dict(pg.eval_on_selector_all("[data-key]", "els => els.map(e => [e.dataset.key, e.textContent])"))
        # a run's section, opened as a person would, shows its confusion figure and curves
        first = pg.locator("details").first
        first.locator("summary").click()
        assert first.locator("figure svg").count() == 2 and first.locator("figure svg").first.is_visible()
        first.scroll_into_view_if_needed()
        assert looks_drawn(save_shot(pg, "report-run.png"))
    for v in definition.variants:
        key = f"table4/{v.name}/dfew/res32"
        for m in ("uar", "war"):
            assert cells[f"{key}/paper_{m}"] == f"{v.paper[m]:.2f}"
        uars = [found[f"table4/{v.name}/dfew/res32/fold{f}"]["uar"] for f in (1, 2)] if v.name in VARIANTS else []
        if uars:
            assert cells[f"{key}/uar_mean"] == f"{statistics.fmean(uars):.2f} ± {statistics.stdev(uars):.2f}"
            assert cells[f"{key}/uar_delta"] == f"{statistics.fmean(uars) - v.paper['uar']:+.2f}"
        else:
            assert cells[f"{key}/uar_mean"] == "—"
    for run, r in found.items():
        for name, recall in zip(r["class_names"], per_class_recall(r["confusion_matrix"])):
            assert cells[f"table4/{run.split('/', 2)[1]}/dfew/res32/{run.rsplit('/', 1)[1]}/recall/{name}"] == \
                ("—" if recall is None else f"{recall:.2f}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tensorboard(cpu_sweep):
    run = cpu_sweep[0] / "table4/full/dfew/res32/fold2"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(run / "tb"),
                             "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as r:
                    runs = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.time() < end, "tensorboard did not start"
                time.sleep(0.5)
        yield url, run, runs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_tensorboard_shows_the_labelled_confusion_figure_offline(tensorboard):
    from PIL import Image

    from mma_dfer.figures import confusion_figure, confusion_title, rgb

    url, run, runs = tensorboard
    assert runs == ["."]  # one run: the hparams session is in the run's own event file
    result = json.loads((run / "result.json").read_text())

    def get(path):
        with urllib.request.urlopen(url + path, timeout=30) as r:
            return json.loads(r.read())

    uar = get("/data/plugin/scalars/scalars?run=.&tag=test/uar")
    logged = [json.loads(x)["test/uar"] for x in (run / "log.jsonl").read_text().splitlines() if '"test/uar"' in x]
    assert len(uar) == 2 and [v[2] for v in uar] == pytest.approx(logged, abs=1e-4)  # float32 in TensorBoard
    assert uar[-1][2] == pytest.approx(result["uar"], abs=1e-4)  # per epoch, ending with the result
    assert get("/data/plugins_listing")["hparams"]["enabled"]
    with browser.page(1400, 1000) as (pg, console, requests):
        pg.goto(f"{url}/#images", wait_until="networkidle")
        img = pg.locator("img[src*='individualImage']").first
        img.wait_for(state="visible", timeout=60000)
        end = time.time() + 60
        while not img.evaluate("i => i.complete && i.naturalWidth > 0"):  # loaded and decoded
            assert time.time() < end, "the confusion image did not load"
            time.sleep(0.2)
        assert looks_drawn(save_shot(pg, "tensorboard-images.png"))
        assert pg.get_by_text("test/confusion", exact=True).is_visible()  # the card of the confusion figure
        box = img.bounding_box()
        assert box["width"] > 300 and box["height"] > 250  # a figure, not a 7x7 grid of 24-px squares
        png = pg.request.get(img.evaluate("i => i.src")).body()
        errors = [m for m in console if m[0] in ("error", "pageerror")]
        offsite = [u for u in requests if not u.startswith((url, "data:", "blob:"))]
    assert errors == [] and offsite == [], (errors, offsite)
    # the image shown is the labelled figure of the run's final confusion matrix
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    title = confusion_title("dfew", 2, result["epoch"], result["uar"], result["war"])
    expected = rgb(confusion_figure(result["confusion_matrix"], result["class_names"], title))
    assert shown.shape == expected.shape and np.array_equal(shown, expected)
