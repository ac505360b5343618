"""The fold-result aggregator on hand-made result sets."""
import json
import statistics
import subprocess
import sys

import pytest

from mma_dfer.experiments.results import AggregateError
from mma_dfer.experiments.table import collect
from tests.conftest import ROOT, result_stamp


def write_result(root, dataset, res, fold, uar, war, uar2=None, war2=None, sub="", overrides=()):
    d = root / sub / dataset / f"res{res}" / f"fold{fold}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps({"dataset": dataset, "fold": fold, "resolution": res, "epoch": 25,
                                               "uar": uar, "war": war, "uar_2clip": uar2, "war_2clip": war2,
                                               "num_test_clips": 100,
                                               **result_stamp(dataset, res, fold, *overrides)}))
    return d / "result.json"


def aggregate(*args):
    return subprocess.run([sys.executable, str(ROOT / "launch/aggregate.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_known_means_and_sample_stds(tmp_path):
    uars, wars = [60.0, 62.0, 64.0, 66.0, 68.0], [70.0, 71.0, 72.0, 73.0, 79.0]
    for f in range(5):
        write_result(tmp_path, "dfew", 160, f + 1, uars[f], wars[f], uars[f] + 1, wars[f] - 1)
    proc = aggregate(tmp_path, "--json", tmp_path / "agg.json", "--csv", tmp_path / "agg.csv", "--plot", tmp_path / "plots")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plots/dfew.png").stat().st_size > 500
    agg = json.loads((tmp_path / "agg.json").read_text())
    row = agg["dfew"]["160"]
    assert row["complete"] and row["missing"] == []
    assert row["uar_mean"] == pytest.approx(64.0) and row["uar_std"] == pytest.approx(statistics.stdev(uars))
    assert row["uar_std"] == pytest.approx(3.1622776601683795)  # n-1
    assert row["war_mean"] == pytest.approx(73.0) and row["war_std"] == pytest.approx(statistics.stdev(wars))
    assert row["uar_2clip_mean"] == pytest.approx(65.0) and row["war_2clip_mean"] == pytest.approx(72.0)
    assert row["folds"]["3"]["uar"] == 64.0 and set(row["folds"]) == {"1", "2", "3", "4", "5"}
    assert row["paper"]["uar"] == 66.61
    assert "| 160 | 60.00/70.00 |" in proc.stdout and "64.00 ± 3.16" in proc.stdout and "66.61/77.15" in proc.stdout
    csv_rows = (tmp_path / "agg.csv").read_text().splitlines()
    assert csv_rows[0].startswith("dataset,resolution,fold,uar,war,uar_2clip,war_2clip,")  # new columns at the end
    assert any(r.startswith("dfew,160,mean,64.0,73.0,65.0,72.0,") for r in csv_rows)


def test_missing_and_failed_folds_are_named_and_the_mean_flagged(tmp_path):
    for f in (1, 2, 4):
        write_result(tmp_path, "mafw", 112, f, 40.0 + f, 55.0)
    failed = tmp_path / "mafw/res112/fold5"
    failed.mkdir(parents=True)
    (failed / "config.yaml").write_text("data: {dataset: mafw, resolution: 112, fold: 5}\n")
    proc = aggregate(tmp_path, "--json", tmp_path / "a.json")
    assert proc.returncode == 3
    row = json.loads((tmp_path / "a.json").read_text())["mafw"]["112"]
    assert row["missing"] == [3, 5] and not row["complete"] and row["failed"] == {"5": str(failed)}
    assert row["uar_mean"] == pytest.approx(42.333333333)
    assert "(incomplete: 3/5 folds)" in proc.stdout and "missing folds [3, 5]" in proc.stdout
    assert "| missing |" in proc.stdout and "| failed |" in proc.stdout


def test_expected_resolutions_without_results_are_missing(tmp_path):
    write_result(tmp_path, "dfew", 112, 1, 50.0, 60.0)
    table = collect(tmp_path, resolutions=["112", "160"])
    assert table["dfew"]["160"]["missing"] == [1, 2, 3, 4, 5]
    assert table["dfew"]["112"]["missing"] == [2, 3, 4, 5]


def test_duplicate_fold_is_an_error_naming_both_files(tmp_path):
    a = write_result(tmp_path, "dfew", 224, 2, 50.0, 60.0, sub="first")
    b = write_result(tmp_path, "dfew", 224, 2, 51.0, 61.0, sub="second")
    proc = aggregate(tmp_path)
    assert proc.returncode == 2 and str(a) in proc.stderr and str(b) in proc.stderr
    with pytest.raises(AggregateError, match="two results for dfew res 224 fold 2"):
        collect(tmp_path)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"dataset": "dfew", "fold": 1}),
                                     json.dumps({"dataset": "dfew", "fold": 1, "resolution": 160, "uar": "x", "war": 1})])
def test_corrupt_result_is_an_error_naming_the_file(tmp_path, content):
    d = tmp_path / "dfew/res160/fold1"
    d.mkdir(parents=True)
    (d / "result.json").write_text(content)
    proc = aggregate(tmp_path)
    assert proc.returncode == 2 and f"{d / 'result.json'}: corrupt result file" in proc.stderr


def test_folds_of_different_configs_are_an_error_naming_runs_and_fields(tmp_path):
    # folds 1-4 of the paper's config, fold 5 trained with another learning rate: never one mean
    for f in range(1, 5):
        write_result(tmp_path, "dfew", 160, f, 60.0 + f, 70.0)
    odd = write_result(tmp_path, "dfew", 160, 5, 90.0, 90.0, overrides=["train.lr=0.5"])
    proc = aggregate(tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "dfew res 160: its folds were made by different configs" in proc.stderr
    assert str(odd) in proc.stderr and "train.lr: 0.0001 in fold 1, 0.5 in fold 5" in proc.stderr
    assert "data.fold" not in proc.stderr and "data.split" not in proc.stderr  # those differ by design
    with pytest.raises(AggregateError, match="different configs"):
        collect(tmp_path)
    # the report's lenient mode: the row is kept, without means, saying why
    from mma_dfer.experiments.table import collect_all

    table, problems = collect_all(tmp_path, strict=False)
    row = table["dfew"]["160"]
    assert row["uar_mean"] is None and row["war_mean"] is None and "train.lr" in row["mixed"]
    assert len(row["folds"]) == 5 and problems == [row["mixed"]]


def test_folds_of_one_config_share_its_fingerprint(tmp_path):
    for f in range(1, 6):
        write_result(tmp_path, "mafw", 224, f, 44.0, 58.0)
    row = collect(tmp_path)["mafw"]["224"]
    assert row["mixed"] is None and row["uar_mean"] == pytest.approx(44.0)
    prints = {v["config_fingerprint"] for v in row["folds"].values()}
    assert len(prints) == 5  # each fold its own run identity ...
    assert isinstance(row["config_fingerprint"], str) and len(row["config_fingerprint"]) == 16  # ... one config


@pytest.mark.parametrize("change, message", [
    ({"dataset": "dfew<img src=x onerror=alert(1)>"}, "dataset="),
    ({"fold": "1"}, "fold='1' is not a fold"),
    ({"resolution": "160<b>"}, "resolution="),
    ({"config_fingerprint": None}, "no run identity"),
    ({"config_fingerprint": "<script>"}, "config_fingerprint or run_identity malformed"),
])
def test_result_fields_the_tables_use_are_validated(tmp_path, change, message):
    path = write_result(tmp_path, "dfew", 160, 1, 50.0, 60.0)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    proc = aggregate(tmp_path)
    assert proc.returncode == 2 and str(path) in proc.stderr and message in proc.stderr, proc.stderr
