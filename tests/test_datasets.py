"""Beyond DFEW and MAFW (issue 24): the dataset registry, CREMA-D and RAVDESS read off their
published file names, speaker-independent generated folds, manifests, and DFEW/MAFW unchanged."""
import csv
import json

import pytest

from mma_dfer.config import ConfigError, load_config
from mma_dfer.data.annotations import AnnotationError, read_split
from tests.conftest import ROOT
from tests.test_slurm import slurm  # noqa: F401  (the local SLURM, started for the protocol test)

# A DFEW and a MAFW run's identity at 9b81fcc (before the registry), on the split files below.
PINNED_9B81FCC = {"dfew_160": ("dfew", 2, "zero0_bf16", "f0531e0037e347a2"),
                  "demo": ("dfew", 2, "cpu_fp32", "5c04e34a6cfef66e"),
                  "mafw_224": ("mafw", 3, "zero2_bf16", "da6ad4e1f311c80c")}


def write_pinned_splits(root):
    for split, rows in (("train", [(1, 1), (2, 3), (3, 7)]), ("test", [(4, 2), (5, 5)])):
        d = root / "dfew" / "EmoLabel_DataSplit" / f"{split}(single-labeled)"
        d.mkdir(parents=True)
        (d / "set_2.csv").write_text("video_name,label\n" + "".join(f"{v},{lab}\n" for v, lab in rows))
    for split, rows in (("train", [("00001", "anger"), ("00002", "neutral")]), ("test", [("00003", "contempt")])):
        d = root / "mafw" / "split/single/no_caption/set_3"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{split}.txt").write_text("".join(f"{c}.mp4 {n}\n" for c, n in rows))


@pytest.mark.parametrize("config", sorted(PINNED_9B81FCC))
def test_dfew_and_mafw_runs_keep_their_identity_and_fingerprint_of_9b81fcc(config, tmp_path):
    from mma_dfer.training.trainer import planned_identity

    write_pinned_splits(tmp_path)
    dataset, fold, ds, expected = PINNED_9B81FCC[config]
    cfg = load_config(config, [f"data.root={tmp_path / dataset}", f"data.fold={fold}", "model.video_checkpoint=null",
                               "model.audio_checkpoint=null"])
    identity, fp = planned_identity(cfg, ds, 1)
    assert fp == expected, identity
    assert not any(k.startswith(("data.manifest", "data.class_names", "data.num_folds", "data.fold_seed",
                                 "data.vocal_channel")) for k in identity)


# -- the registry is the one home of the dataset facts ------------------------------------------------

def test_the_registry_answers_for_every_dataset_and_the_readme_table_is_its_paper_numbers():
    from mma_dfer import datasets
    from mma_dfer.labels import CLASS_NAMES

    assert datasets.NAMES == ("dfew", "mafw", "cremad", "ravdess", "manifest")
    assert [len(datasets.get(n).classes) for n in ("dfew", "mafw", "cremad", "ravdess")] == [7, 11, 6, 8]
    assert CLASS_NAMES["dfew"] == list(datasets.get("dfew").classes)  # a view, not a copy
    assert {n for n, d in datasets.REGISTRY.items() if d.paper} == {"dfew", "mafw"}
    readme = (ROOT / "README.md").read_text()
    for res in ("112", "160", "224"):
        line = next(x for x in readme.splitlines() if x.startswith(f"| {res} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        numbers = [tuple(float(v) for v in c.split(" / ")) for c in cells]
        d, m = datasets.paper("dfew", res), datasets.paper("mafw", res)
        assert numbers == [d[:2], d[2:], m[:2], m[2:]]
    docs = (ROOT / "docs/data.md").read_text()  # its table of the datasets says what the registry says
    for name in ("dfew", "mafw", "cremad", "ravdess"):
        line = next(x for x in docs.splitlines() if x.startswith(f"| `{name}` |"))
        assert line.split("|")[2].strip().startswith(", ".join(datasets.get(name).classes)), name
    with pytest.raises(ConfigError, match=r"data.fold=6 is not a fold of CREMA-D's 5-fold protocol \(1-5\)"):
        load_config(None, ["data.dataset=cremad", "data.fold=6"])
    assert load_config(None, ["data.dataset=cremad", "data.num_folds=8", "data.fold=8"]).model.num_classes == 6
    with pytest.raises(ConfigError, match="data.num_folds: DFEW's folds are its official 5"):
        load_config(None, ["data.num_folds=3"])
    with pytest.raises(ConfigError, match="data.vocal_channel='song' is RAVDESS's"):
        load_config(None, ["data.dataset=cremad", "data.vocal_channel=song"])
    with pytest.raises(ConfigError, match="data.manifest"):
        load_config(None, ["data.dataset=manifest"])


# -- CREMA-D and RAVDESS file names -------------------------------------------------------------------

def touch(root, *names):
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).touch()


def cfg_of(root, dataset, *sets):
    return load_config(None, [f"data.dataset={dataset}", f"data.root={root}", "data.source=video", *sets]).data


def test_cremad_clips_are_read_off_their_published_names(tmp_path):
    from mma_dfer.datasets.layouts import parse_cremad

    names = [f"{a}_{s}_{e}_{lvl}.flv" for a, s, e, lvl in
             [(1001, "DFA", "ANG", "XX"), (1001, "IEO", "HAP", "HI"), (1091, "IEO", "SAD", "LO"), (1045, "TIE", "NEU", "XX"),
              (1002, "ITS", "DIS", "XX"), (1003, "WSI", "FEA", "XX")]]
    assert parse_cremad(tmp_path / "VideoFlash" / names[0]) == ("1001_DFA_ANG_XX", 0, "1001")
    assert parse_cremad(tmp_path / names[2])[1:] == (5, "1091")  # SAD: the last of ANG DIS FEA HAP NEU SAD
    for bad, field in (("1001_DFA_ANG.flv", "fields"), ("0999_DFA_ANG_XX.flv", "actor='0999'"),
                       ("1092_DFA_ANG_XX.flv", "actor='1092'"), ("1001_DFA_ANG_ZZ.flv", "level='ZZ'"),
                       ("1001_dfa_ANG_XX.flv", "sentence='dfa'")):
        with pytest.raises(ValueError, match=field):
            parse_cremad(tmp_path / bad)
    touch(tmp_path, *[f"VideoFlash/{n}" for n in names], "VideoFlash/1001_DFA_ANG.flv")
    with pytest.raises(AnnotationError, match=r"1001_DFA_ANG.flv: not a CREMA-D name .*data.on_error=skip skips it"):
        read_split(cfg_of(tmp_path, "cremad"), "train")
    skip = cfg_of(tmp_path, "cremad", "data.on_error=skip", "data.num_folds=2")
    clips = read_split(skip, "train") + read_split(skip, "test")
    assert sorted(s.clip_id for s in clips) == sorted(n[:-4] for n in names)
    s = next(s for s in clips if s.clip_id == "1045_TIE_NEU_XX")
    assert (s.label, s.video, s.wav) == (4, tmp_path / "VideoFlash/1045_TIE_NEU_XX.flv",
                                         tmp_path / "AudioWAV/1045_TIE_NEU_XX.wav")
    # an emotion outside CREMA-D's six is an error even when bad names are skipped
    touch(tmp_path, "VideoFlash/1004_DFA_CAL_XX.flv")
    with pytest.raises(AnnotationError, match=r"1004_DFA_CAL_XX.flv: field emotion='CAL' is not one of CREMA-D's"):
        read_split(cfg_of(tmp_path, "cremad", "data.on_error=skip", "data.num_folds=3"), "train")


def test_ravdess_takes_the_audio_video_files_of_the_chosen_vocal_channel(tmp_path):
    from mma_dfer.datasets.layouts import parse_ravdess

    f = parse_ravdess(tmp_path / "Actor_12/01-01-06-01-02-01-12.mp4")
    assert (f["modality"], f["vocal channel"], f["emotion"], f["actor"]) == ("01", "01", "06", "12")
    names = []
    for actor in (1, 2, 3, 4):
        for emo in (1, 3, 8):
            names += [f"Actor_{actor:02d}/01-01-{emo:02d}-01-01-01-{actor:02d}.mp4",  # speech, audio-video
                      f"Actor_{actor:02d}/02-01-{emo:02d}-01-01-01-{actor:02d}.mp4",  # video-only: not a clip
                      f"Actor_{actor:02d}/01-02-{emo:02d}-02-02-02-{actor:02d}.mp4"]  # song
    touch(tmp_path, *names)

    def clips(*sets):
        cfg = cfg_of(tmp_path, "ravdess", "data.num_folds=2", *sets)
        return read_split(cfg, "train") + read_split(cfg, "test")
    speech = clips()
    assert len(speech) == 12 and all(s.clip_id.startswith("01-01-") for s in speech)
    s = next(s for s in speech if s.clip_id == "01-01-08-01-01-01-03")
    assert (s.label, s.video) == (7, tmp_path / "Actor_03/01-01-08-01-01-01-03.mp4")  # 08 surprised
    assert {c.clip_id[:5] for c in clips("data.vocal_channel=song")} == {"01-02"}
    assert len(clips("data.vocal_channel=both")) == 24
    for bad, field in (("Actor_01/01-01-09-01-01-01-01.mp4", "emotion='09'"),
                       ("Actor_01/01-01-03-01-01-01-02.mp4", "actor='02' but the file is in Actor_01"),
                       ("Actor_01/01-01-03-03-01-01-01.mp4", "intensity='03'"),
                       ("Actor_01/01-01-03-01-01.mp4", "fields")):
        with pytest.raises(ValueError, match=field):
            parse_ravdess(tmp_path / bad)


# -- generated folds ----------------------------------------------------------------------------------

def test_generated_folds_are_speaker_independent_stratified_deterministic_and_written_once(tmp_path):
    import random

    from mma_dfer.datasets.layouts import CREMAD_EMOTIONS

    rng = random.Random(7)  # a CREMA-D-sized layout: 91 actors, uneven clips per actor and class
    names = [f"VideoFlash/{a}_{s}_{e}_XX.flv" for a in range(1001, 1092) for e in CREMAD_EMOTIONS
             for s in rng.sample(["IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA"], rng.randint(1, 9))]
    touch(tmp_path, *names)
    per_fold = {}
    for fold in range(1, 6):
        cfg = cfg_of(tmp_path, "cremad", f"data.fold={fold}")
        train, test = read_split(cfg, "train"), read_split(cfg, "test")
        actors = lambda ss: {s.clip_id[:4] for s in ss}  # noqa: E731
        assert not actors(train) & actors(test)  # no speaker on both sides
        assert len(train) + len(test) == len(names)
        per_fold[fold] = test
    tested = [s.clip_id for t in per_fold.values() for s in t]
    assert sorted(tested) == sorted(n[11:-4] for n in names)  # every clip in exactly one test part
    for label in range(6):  # stratified: each test part holds about 1/5 of every class
        total = sum(1 for n in names if n.split("_")[2] == CREMAD_EMOTIONS[label])
        for test in per_fold.values():
            assert abs(sum(s.label == label for s in test) - total / 5) <= 0.05 * total, label
    folder = tmp_path / "splits/cremad-k5-seed0"
    written = {p: p.read_bytes() for p in sorted(folder.rglob("*.csv"))}
    assert len(written) == 10
    # deterministic: the same seed deals the same folds elsewhere, another seed others
    other = tmp_path / "copy"
    touch(other, *names)
    read_split(cfg_of(other, "cremad"), "test")
    assert {p.relative_to(folder): b for p, b in written.items()} == {
        p.relative_to(other / "splits/cremad-k5-seed0"): p.read_bytes()
        for p in (other / "splits/cremad-k5-seed0").rglob("*.csv")}
    read_split(cfg_of(other, "cremad", "data.fold_seed=1"), "test")
    assert (other / "splits/cremad-k5-seed1/set_1/test.csv").read_bytes() != written[folder / "set_1/test.csv"]
    # written once: a clip added later does not move the folds; the run identity hashes the lists
    touch(tmp_path, "VideoFlash/1001_WSI_ANG_XX.flv")
    assert [s.clip_id for s in read_split(cfg_of(tmp_path, "cremad"), "test")] == [s.clip_id for s in per_fold[1]]
    assert {p: p.read_bytes() for p in sorted(folder.rglob("*.csv"))} == written


# -- a dataset of one's own, from a manifest ----------------------------------------------------------

# not emotions of either benchmark; "&" and "<" must reach the report escaped
WEATHER = ["sunny", "rain & wind", "fog <dense>", "snow"]


def write_manifest(path, root, extra_columns=""):
    """A manifest over the first four DFEW classes of a generated dataset, labelled with WEATHER;
    clip k of a class is speaker spk<k> (five speakers)."""
    from mma_dfer.data.annotations import read_split
    from tests.conftest import data_cfg

    samples = read_split(data_cfg(root, "dfew", "data.fold=1"), "train") + read_split(data_cfg(root, "dfew"), "test")
    rows, seen = [], {}
    for s in sorted(samples, key=lambda s: s.clip_id):
        if s.label < len(WEATHER):
            k = seen[s.label] = seen.get(s.label, -1) + 1
            rows.append((str(s.video), WEATHER[s.label], f"spk{k}"))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    return rows


def test_a_manifest_is_read_and_its_folds_generated(dfew_root, tmp_path):
    manifest = tmp_path / "weather.csv"
    rows = write_manifest(manifest, dfew_root)
    cfg = load_config(None, ["data.dataset=manifest", f"data.manifest={manifest}", "data.source=video", "data.fold=2"])
    assert cfg.model.num_classes == 4 and list(cfg.data.class_names) == sorted(WEATHER)  # from the file, sorted
    train, test = read_split(cfg.data, "train"), read_split(cfg.data, "test")
    assert len(train) + len(test) == len(rows) and len(test) == 4
    by_video = {r[0]: r for r in rows}
    assert len({by_video[str(s.video)][2] for s in test}) == 1  # one speaker: the test part of its fold
    assert {sorted(WEATHER)[s.label] for s in test} == set(WEATHER)
    assert (tmp_path / "splits").is_dir()  # generated next to the manifest
    given = load_config(None, ["data.dataset=manifest", f"data.manifest={manifest}",
                               "data.class_names=[snow, fog <dense>, sunny, rain & wind]"])
    assert read_split(given.data, "test")[0].label == ["snow", "fog <dense>", "sunny", "rain & wind"].index(
        by_video[str(read_split(given.data, "test")[0].video)][1])
    # folds given in the file: fold column, K = its largest fold
    with_folds = tmp_path / "folds.csv"
    with_folds.write_text("path,label,fold\n" + "".join(f"{p},{lab},{1 + int(g[3:]) % 3}\n" for p, lab, g in rows))
    c3 = load_config(None, ["data.dataset=manifest", f"data.manifest={with_folds}", "data.fold=3"])
    assert len(read_split(c3.data, "test")) == sum(1 for *_, g in rows if int(g[3:]) % 3 == 2)
    with pytest.raises(ConfigError, match=r"data.fold=4 is not a fold of manifest's 3-fold protocol \(1-3\)"):
        load_config(None, ["data.dataset=manifest", f"data.manifest={with_folds}", "data.fold=4"])
    # named errors: a label outside data.class_names, a missing column, a row without its label
    with pytest.raises(AnnotationError, match=r"weather.csv:\d+: label 'snow' is not one of the classes"):
        read_split(load_config(None, ["data.dataset=manifest", f"data.manifest={manifest}",
                                      "data.class_names=[sunny, rain & wind, fog <dense>, hail]"]).data, "test")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.mp4,snow\n")
    with pytest.raises(ConfigError, match=r"bad.csv: the header must name the columns \['path', 'label'\]"):
        load_config(None, ["data.dataset=manifest", f"data.manifest={bad}"])
    bad.write_text("path,label,group\nx.mp4,snow,a\ny.mp4,,a\n")
    with pytest.raises(ConfigError, match=r"bad.csv:3: the field 'label' is empty"):
        load_config(None, ["data.dataset=manifest", f"data.manifest={bad}"])


@pytest.mark.slow
def test_a_manifest_of_other_classes_trains_and_its_names_reach_every_output(dfew_root, tmp_path, capsys):
    import subprocess
    import sys

    from mma_dfer.cli import main as cli_main
    from tests.conftest import run_train

    manifest = tmp_path / "weather.csv"
    rows = write_manifest(manifest, dfew_root)
    runs = tmp_path / "runs"
    run = runs / "manifest/res32/fold1"
    run_train("--config", str(ROOT / "configs/demo.yaml"), "--set", "data.dataset=manifest", "--set",
              f"data.manifest={manifest}", "--set", "data.root=", "--set", "train.epochs=1", "--set",
              "train.max_steps_per_epoch=2", "--set", "eval.clips=[1]", "--set", f"output_dir={run}")
    result = json.loads((run / "result.json").read_text())
    names = sorted(WEATHER)
    assert result["class_names"] == names and result["folds"] == 5 and result["dataset"] == "manifest"
    assert len(result["confusion_matrix"]) == 4 and result["num_test_clips"] == 4
    assert "data.manifest_sha256" in result["run_identity"]
    events = next((run / "tb").glob("events*")).read_bytes()
    assert b"test/confusion" in events and all(n.encode() in events for n in names)  # the figure, the hparams
    # predict and evaluate take the names from the run (its config.yaml records them)
    rc = cli_main(["predict", rows[0][0], "--checkpoint", str(run), "--faces", "none", "--json",
                   str(tmp_path / "p.json")])
    assert rc == 0 and list(json.loads((tmp_path / "p.json").read_text())[0]["probabilities"]) == names
    capsys.readouterr()
    rc = cli_main(["evaluate", "--checkpoint", str(run), "--output", str(tmp_path / "eval")])
    assert rc == 0 and json.loads((tmp_path / "eval/result.json").read_text())["class_names"] == names
    # the aggregator: one fold of the manifest's five (exit 3: folds missing); the report labels the matrix
    agg = subprocess.run([sys.executable, str(ROOT / "launch/aggregate.py"), str(runs), "--json",
                          str(tmp_path / "agg.json")], capture_output=True, text=True, timeout=120)
    assert agg.returncode == 3 and "### manifest" in agg.stdout and "missing folds [2, 3, 4, 5]" in agg.stdout
    row = json.loads((tmp_path / "agg.json").read_text())["manifest"]["32"]
    assert row["expected"] == [1, 2, 3, 4, 5] and row["paper"] is None
    rep = subprocess.run([sys.executable, str(ROOT / "launch/report.py"), str(runs)], capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 0, rep.stderr
    html = (runs / "report.html").read_text()
    assert "rain &amp; wind" in html and "fog &lt;dense&gt;" in html and "fog <dense>" not in html


# -- the whole protocol on the local SLURM ------------------------------------------------------------

@pytest.mark.slow
def test_the_protocol_runs_on_a_generated_cremad_layout_through_slurm(slurm, tmp_path):
    """slurm/all_folds.sh with DATASET=cremad and no FOLDS: the registry's 5 folds, generated by the
    tasks themselves (at once: one set of split files wins), then the aggregation job and the report."""
    import subprocess
    import sys
    from pathlib import Path

    from mma_dfer.data.synthetic import make_dataset
    from tests.test_slurm import job_states, sh, wait_idle

    root = make_dataset("cremad", tmp_path / "CREMA-D", clips_per_class=5, seed=5)  # 30 clips of 5 actors
    runs = tmp_path / "runs"
    runs.mkdir()
    sets = f"data.root={root} data.source=video train.epochs=1 train.max_steps_per_epoch=2 eval.clips=[1]"
    exports = ",".join(["ALL", "CPU_ONLY=1", "DATASET=cremad", "RESOLUTIONS=32", "CONFIG=configs/demo.yaml",
                        f"SETS={sets}", f"RUNS_ROOT={runs}", f"MMA_DFER_HOME={ROOT}",
                        f"VENV={Path(sys.executable).parent.parent}"])
    proc = sh(["sbatch", "--parsable", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=3G", "--array=0-4",
               f"--output={runs}/slurm-%A_%a.out", f"--export={exports}", str(ROOT / "slurm/all_folds.sh")],
              slurm, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    wait_idle(slurm, timeout=1500)
    states = job_states(slurm, job)
    assert [states.get(f"{job}_{i}") for i in range(5)] == ["COMPLETED"] * 5, states
    tests = []
    for fold in range(1, 6):
        r = json.loads((runs / f"cremad/res32/fold{fold}/result.json").read_text())
        assert (r["dataset"], r["fold"], r["folds"]) == ("cremad", fold, 5) and r["num_test_clips"] == 6
        assert r["class_names"] == ["anger", "disgust", "fear", "happy", "neutral", "sad"]
        tests.append(r["run_identity"]["data.split_test"])
    assert len(set(tests)) == 5 and len(list((root / "splits").iterdir())) == 1  # one set of folds
    agg = json.loads((runs / "aggregate.json").read_text())
    assert agg["cremad"]["32"]["complete"] and agg["cremad"]["32"]["paper"] is None
    table = (runs / f"aggregate-{job}.out").read_text()
    assert "### CREMA-D" in table and "| 32 |" in table
    rep = subprocess.run([sys.executable, str(ROOT / "launch/report.py"), str(runs)], capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 0, rep.stderr
    html = (runs / "report.html").read_text()
    assert "CREMA-D" in html and ">disgust<" in html


def test_prepare_and_verify_read_a_cremad_layout_into_the_packed_store(tmp_path, capsys):
    from mma_dfer.cli import main as cli_main
    from mma_dfer.data.synthetic import make_dataset

    raw, out = tmp_path / "CREMA-D", tmp_path / "prepared"
    make_dataset("cremad", raw, clips_per_class=5, seed=2, size=32, min_frames=8, max_frames=12)
    for bad, field in (("1001_DFA_ANG.flv", "not a CREMA-D name"), ("1001_DFA_CAL_XX.flv", "field emotion='CAL'")):
        touch(raw, f"VideoFlash/{bad}")
        assert cli_main(["prepare", "--dataset", "cremad", "--raw", str(raw), "--out", str(out)]) == 2
        assert f"{bad}: {field}" in capsys.readouterr().err
        (raw / "VideoFlash" / bad).unlink()
    assert cli_main(["prepare", "--dataset", "cremad", "--raw", str(raw), "--out", str(out), "--pack"]) == 0
    assert "30 clips: 30 done" in capsys.readouterr().out
    assert (out / "AudioWAV").resolve() == (raw / "AudioWAV").resolve()  # CREMA-D's own 16 kHz wavs
    for source in ("video", "packed"):
        assert cli_main(["verify", "--config", "tiny", "--set", "data.dataset=cremad", "--set", f"data.root={out}",
                         "--set", f"data.source={source}"]) == 0
        text = capsys.readouterr().out
        assert "no problems found" in text and "fold 5: train 24 test 6" in text


def test_submit_and_sweeps_take_any_registered_dataset_with_its_folds(tmp_path):
    from mma_dfer.cluster.submit import protocol_folds
    from mma_dfer.experiments.sweep import expand, load_sweep
    from mma_dfer.resources import paper_config

    assert (paper_config("dfew", 160), paper_config("cremad", 160)) == ("dfew_160", "paper")
    assert protocol_folds("paper", ["data.dataset=cremad"]) == [1, 2, 3, 4, 5]
    assert protocol_folds("paper", ["data.dataset=ravdess", "data.num_folds=3"]) == [1, 2, 3]
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("name: s\ndatasets: [cremad, dfew]\nfolds: [1, 2]\nresolutions: [112]\n"
                          "variants:\n  full: {}\n")
    runs = expand(load_sweep(sweep_file), tmp_path)
    assert {(r.dataset, r.config) for r in runs} == {("cremad", "paper"), ("dfew", "dfew_112")}
