"""prepare / verify / evaluate on real faces (scikit-image's astronaut photo) and generated data."""
import hashlib
import json
import signal
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from mma_dfer.data.prepare import prepare
from mma_dfer.data.synthetic import render_audio, write_mp4
from tests.conftest import ROOT

pytest.importorskip("facenet_pytorch")
skimage_data = pytest.importorskip("skimage.data")

FACE_BOX = np.array([181, 62, 268, 172])  # the astronaut's face in the 512x512 photo (x1, y1, x2, y2)
CANVAS, FRAMES = 320, 12


def moving_photo(photo, t, scale0, scale1, dx, dy):
    """Frame t: the photo scaled from scale0 to scale1 and moved by (dx, dy) px over the clip."""
    from PIL import Image

    a = t / (FRAMES - 1)
    s = scale0 + (scale1 - scale0) * a
    size = int(round(512 * s))
    img = np.asarray(Image.fromarray(photo).resize((size, size), Image.BILINEAR))
    ox, oy = int(round(-40 + dx * a)), int(round(-20 + dy * a))
    canvas = np.full((CANVAS, CANVAS, 3), 90, np.uint8)
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + size, CANVAS), min(oy + size, CANVAS)
    canvas[y0:y1, x0:x1] = img[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return canvas, FACE_BOX * s + np.array([ox, oy, ox, oy])


MOTIONS = {"00001": (0.6, 0.7, 30, 10), "00002": (0.7, 0.55, -20, 25), "00003": (0.5, 0.6, 10, -15)}


@pytest.fixture(scope="module")
def face_raw(tmp_path_factory):
    """A MAFW-layout raw dataset: 3 clips of the moving astronaut and 1 of a photo with no face."""
    root = tmp_path_factory.mktemp("mafw_raw")
    rng = np.random.default_rng(0)
    boxes = {}
    for cid, motion in MOTIONS.items():
        frames, bxs = zip(*(moving_photo(skimage_data.astronaut(), t, *motion) for t in range(FRAMES)))
        write_mp4(root / "data/clips" / f"{cid}.mp4", np.stack(frames), render_audio(3, 11, FRAMES / 25, rng))
        boxes[cid] = np.stack(bxs)
    coffee = np.asarray(skimage_data.coffee())[:CANVAS, :CANVAS]
    write_mp4(root / "data/clips/00004.mp4", np.stack([coffee] * FRAMES), render_audio(1, 11, FRAMES / 25, rng))
    names = ["anger", "fear", "happiness", "neutral"]
    for fold in range(1, 6):
        d = root / f"split/single/no_caption/set_{fold}"
        d.mkdir(parents=True)
        (d / "train.txt").write_text("".join(f"0000{i}.mp4 {names[i - 1]}\n" for i in (1, 2, 3)))
        (d / "test.txt").write_text("00004.mp4 neutral\n")
    return root, boxes


def tree_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".jpg", ".wav"):
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_prepare_finds_the_face_in_every_frame(face_raw, tmp_path):
    raw, boxes = face_raw
    out = tmp_path / "out"
    s = prepare("mafw", raw, out, workers=1, faces="mtcnn", progress=False)
    assert (s["clips"], s["done"], s["failed"]) == (4, 4, 0)
    assert s["no_face"] == ["00004"] and (out / "prepare_no_face.txt").read_text() == "00004\n"
    for cid, truth in boxes.items():
        marker = json.loads((out / ".prepare" / f"{cid}.json").read_text())
        assert marker["detected"] == marker["frames"] == FRAMES
        for (cx, cy, side), (x1, y1, x2, y2) in zip(marker["squares"], truth):
            # the square crop contains the known face box, and is not much larger than it
            assert cx - side / 2 <= x1 and x2 <= cx + side / 2 and cy - side / 2 <= y1 and y2 <= cy + side / 2
            assert side < 2.2 * max(x2 - x1, y2 - y1)
        frames = sorted((out / "data/faces" / cid).iterdir())
        assert [f.name for f in frames] == [f"{k:05d}.jpg" for k in range(FRAMES)]
    import wave

    with wave.open(str(out / "data/wav/00001.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert abs(w.getnframes() / 16000 - FRAMES / 25) < 0.1
    # the output is a complete data.root for training
    from mma_dfer.config import load_config
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset

    cfg = load_config(None, ["data.dataset=mafw", f"data.root={out}", "data.resolution=112"]).data
    item = ClipDataset(read_split(cfg, "train"), cfg, train=False)[0]
    assert item["video"].shape == (16, 3, 112, 112) and not item["silent"]


def test_detection_batches_give_the_same_boxes(face_raw):
    """MTCNN on whole batches (DETECT_BATCH_CUDA frames a call on a GPU, --device cuda) finds the
    boxes it finds 16 or 5 frames at a time: the batch size is throughput, not results (checked
    here on the CPU; on a GPU the same code runs with device="cuda")."""
    import decord

    from mma_dfer.data.faces import DETECT_BATCH_CUDA, detect_boxes

    raw, truth = face_raw
    frames = decord.VideoReader(str(raw / "data/clips/00002.mp4")).get_batch(list(range(FRAMES))).asnumpy()
    by_batch = {b: detect_boxes(frames, batch=b) for b in (5, 16, DETECT_BATCH_CUDA)}
    assert len(by_batch[5]) == FRAMES and all(b is not None for b in by_batch[5])
    for b in (16, DETECT_BATCH_CUDA):
        np.testing.assert_allclose(np.stack(by_batch[b]), np.stack(by_batch[5]), atol=1e-2)
    for (x1, y1, x2, y2), (a1, b1, a2, b2) in zip(by_batch[5], truth["00002"]):  # and they are the face
        inter = max(0, min(x2, a2) - max(x1, a1)) * max(0, min(y2, b2) - max(y1, b1))
        assert inter / ((x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter) > 0.5


def test_prepare_resumes_after_a_kill_and_redoes_nothing(face_raw, tmp_path):
    raw, _ = face_raw
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    prepare("mafw", raw, clean, faces="mtcnn", progress=False)
    cmd = [sys.executable, "-m", "mma_dfer", "prepare", "--dataset", "mafw", "--raw", str(raw), "--out", str(killed),
           "--faces", "mtcnn"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 300
    def finished():
        return [m for m in (killed / ".prepare").glob("*.json") if json.loads(m.read_text())["status"] == "done"]

    while not finished():
        assert time.time() < end and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = len(finished())
    assert 1 <= finished_before < 4
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{4 - finished_before} done, {finished_before} skipped, 0 failed" in rerun.stdout
    assert tree_digest(killed) == tree_digest(clean)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "0 done, 4 skipped" in again.stdout


def test_prepare_never_overwrites_foreign_outputs_without_force(face_raw, tmp_path):
    raw, _ = face_raw
    out = tmp_path / "out"
    (out / "data/wav").mkdir(parents=True)
    (out / "data/wav/00002.wav").write_bytes(b"user's own file")
    s = prepare("mafw", raw, out, faces="none", progress=False)
    assert (out / "data/wav/00002.wav").read_bytes() == b"user's own file" and s["skipped"] == 1
    s = prepare("mafw", raw, out, faces="none", force=True, progress=False, cache_resolutions=(112, 160))
    assert s["done"] == 4 and (out / "data/wav/00002.wav").read_bytes()[:4] == b"RIFF"
    (entries,) = (out / "cache/mafw").glob("s224-*")  # one settings folder (cache_settings)
    assert s["cached"] == 4 and len(list(entries.glob("*.frames.npy"))) == 4
    # the same cache from two worker processes
    from mma_dfer.data.prepare import _all_samples, fill_cache

    serial = {p.name: p.read_bytes() for p in entries.glob("*.npy")}
    shutil.rmtree(out / "cache")
    assert fill_cache("mafw", out, _all_samples("mafw", raw)[0], "none", workers=2) == 4
    assert {p.name: p.read_bytes() for p in entries.glob("*.npy")} == serial


def test_verify_names_a_deleted_a_truncated_clip_and_a_bad_label(tmp_path):
    from mma_dfer.data.synthetic import make_dataset

    root = make_dataset("dfew", tmp_path / "dfew", clips_per_class=2, seed=1)
    base = ["python", "-m", "mma_dfer", "verify", "--set", "data.dataset=dfew", "--set", f"data.root={root}",
            "--set", "data.source=video", "--fold", "1"]
    ok = subprocess.run([sys.executable, *base[1:]], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "no problems found" in ok.stdout and "fold 1: train" in ok.stdout
    assert "published: 9356 / 2341" in ok.stdout
    (root / "Clip/original/00002.mp4").unlink()
    data = (root / "Clip/original/00004.mp4").read_bytes()  # 00002 and 00004 are fold-1 training clips
    (root / "Clip/original/00004.mp4").write_bytes(data[: len(data) // 3])
    csv = root / "EmoLabel_DataSplit/test(single-labeled)/set_1.csv"
    csv.write_text(csv.read_text() + "7,9\n")
    bad = subprocess.run([sys.executable, *base[1:]], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "00002.mp4: video file not found" in bad.stdout
    assert "00004.mp4: cannot decode" in bad.stdout
    assert "set_1.csv:" in bad.stdout and "label 9 is not a DFEW label" in bad.stdout
