"""The data pipeline on generated real media files: folds, sampling, tensors, audio, bad input."""
import logging
import wave

import numpy as np
import pytest
import torch

from mma_dfer.data import audio as A
from mma_dfer.data import video as V
from mma_dfer.data.annotations import AnnotationError, read_split
from mma_dfer.data.dataset import ClipDataset, collate
from mma_dfer.data.synthetic import render_frames, write_mp4
from mma_dfer.data.video import ClipError
from mma_dfer.labels import CLASS_NAMES
from tests.conftest import data_cfg


# -- sampling ------------------------------------------------------------------------------

def test_uniform_indices_are_segment_middles():
    assert V.test_indices(32, 16).tolist() == [1 + 2 * i for i in range(16)]
    assert V.test_indices(30, 16).tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 19, 21, 23, 25, 27, 29]


def test_two_clip_indices_interleave():
    # tick = 48/16 = 3: clip 0 at 1/3 of each segment, clip 1 at 2/3
    assert V.test_indices(48, 16, 0, 2).tolist() == [3 * i + 1 for i in range(16)]
    assert V.test_indices(48, 16, 1, 2).tolist() == [3 * i + 2 for i in range(16)]


def test_short_clips_repeat_the_last_frame():
    assert V.test_indices(5, 16).tolist() == [0, 1, 2, 3, 4] + [4] * 11
    assert V.train_indices(5, 16, np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4] + [4] * 11


def test_train_indices_one_random_frame_per_segment():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = V.train_indices(50, 16, rng)  # segments of 3 frames
        assert all(3 * s <= i < 3 * s + 3 for s, i in enumerate(idx))
    idx = V.train_indices(20, 16, rng)  # fewer than 2 frames per segment: sorted draws
    assert list(idx) == sorted(idx) and len(idx) == 16


def test_frames_are_ordered_by_number_not_name(mafw_root):
    files = V.list_frames(mafw_root / "data/faces/00001")
    assert [int(f.stem) for f in files] == list(range(len(files)))
    assert len(files) > 10  # so "10.png" exists and a lexicographic sort would misplace it


# -- annotations -----------------------------------------------------------------------------

def test_official_dfew_split(dfew_root):
    cfg = data_cfg(dfew_root, "dfew", "data.fold=2")
    test = read_split(cfg, "test")
    assert len(test) == 7 and len(read_split(cfg, "train")) == 28
    rows = (dfew_root / "EmoLabel_DataSplit/test(single-labeled)/set_2.csv").read_text().splitlines()[1:]
    first_id, first_label = rows[0].split(",")
    assert test[0].clip_id == f"{int(first_id):05d}" and test[0].label == int(first_label) - 1
    assert test[0].frames == dfew_root / "Clip/clip_224x224" / test[0].clip_id


def test_official_mafw_split_uses_class_names(mafw_root):
    test = read_split(data_cfg(mafw_root, "mafw"), "test")
    assert [s.label for s in test] == list(range(11))
    assert test[0].video.name == "00001.mp4"


@pytest.mark.parametrize("fmt,row,label", [
    ("mma", "/scratch/x/clips_faces/00025 46 3", "anger"),  # authors' MAFW order: 3 = anger
    ("mma", "/scratch/x/clips_faces/00025 46 2", "neutral"),
    ("maedfer", "/data/MAFW/data/frames/00025 4", "neutral"),  # MAE-DFER order: 4 = neutral
    ("maedfer", "/data/MAFW/data/frames/00025 0", "anger"),
    ("hicmae", "/data/frames/00025 /data/wav/00025.wav 6", "surprise"),
])
def test_list_formats_convert_mafw_labels_to_canonical(tmp_path, fmt, row, label):
    lst = tmp_path / "list.txt"
    lst.write_text(row + "\n")
    cfg = data_cfg(tmp_path, "mafw", f"data.annotations={fmt}", f"data.train_list={lst}", f"data.test_list={lst}")
    (sample,) = read_split(cfg, "train")
    assert CLASS_NAMES["mafw"][sample.label] == label
    assert sample.clip_id == "00025" and sample.frames == tmp_path / "data/faces/00025"
    if fmt == "hicmae":
        assert sample.wav == tmp_path / "data/wav/00025.wav"


def test_dfew_mma_rows_keep_the_official_minus_one_labels(tmp_path):
    lst = tmp_path / "DFEW_set_1_train.txt"
    lst.write_text("/scratch/chumache/dfer_datasets/dfew/clip_224x224/00001 144 1\n")
    cfg = data_cfg(tmp_path, "dfew", "data.annotations=mma", f"data.train_list={lst}", f"data.test_list={lst}")
    (sample,) = read_split(cfg, "train")
    assert CLASS_NAMES["dfew"][sample.label] == "sad" and sample.num_frames == 144


def test_unknown_label_and_empty_fold_name_the_file(tmp_path, mafw_root):
    bad = tmp_path / "split/single/no_caption/set_1"
    bad.mkdir(parents=True)
    (bad / "train.txt").write_text("00001.mp4 anger\n00002.mp4 joy\n")
    (bad / "test.txt").write_text("\n")
    cfg = data_cfg(tmp_path, "mafw")
    with pytest.raises(AnnotationError, match=r"set_1/train.txt:2: unknown MAFW class 'joy'"):
        read_split(cfg, "train")
    with pytest.raises(AnnotationError, match=r"set_1/test.txt: fold 1 test split has no samples"):
        read_split(cfg, "test")
    lst = tmp_path / "l.txt"
    lst.write_text("/x/00001 12 11\n")
    cfg = data_cfg(tmp_path, "mafw", "data.annotations=mma", f"data.train_list={lst}", f"data.test_list={lst}")
    with pytest.raises(AnnotationError, match=r"l.txt:1: label 11 out of range 0-10"):
        read_split(cfg, "train")


def test_missing_root_and_fold_file(tmp_path):
    with pytest.raises(AnnotationError, match="data.root=.*nothere does not exist"):
        read_split(data_cfg(tmp_path / "nothere", "dfew"), "train")
    with pytest.raises(AnnotationError, match=r"fold file not found: .*set_3.csv"):
        read_split(data_cfg(tmp_path, "dfew", "data.fold=3"), "train")


# -- tensors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["frames", "video"])
@pytest.mark.parametrize("res", [112, 160, 224])
def test_item_shapes_and_ranges(mafw_root, source, res):
    cfg = data_cfg(mafw_root, "mafw", f"data.source={source}", f"data.resolution={res}")
    samples = read_split(cfg, "test")
    for train, clips in ((True, 1), (False, 1), (False, 2)):
        item = ClipDataset(samples, cfg, train=train, clips=clips)[0]
        lead = () if clips == 1 else (2,)
        assert item["video"].shape == (*lead, 16, 3, res, res) and item["video"].dtype == torch.float32
        assert item["audio"].shape == (*lead, 1, 512, 128) and item["audio"].dtype == torch.float32
        assert 0 <= item["video"].min() and item["video"].max() <= 1


def test_frames_and_video_sources_agree_at_test_time(mafw_root):
    items = [ClipDataset(read_split(data_cfg(mafw_root, "mafw", f"data.source={s}"), "test"),
                         data_cfg(mafw_root, "mafw", f"data.source={s}"), train=False)[3] for s in ("frames", "video")]
    # the png frames are lossless, the mp4 is H.264 (crf 18): the same pictures up to coding noise
    assert (items[0]["video"] - items[1]["video"]).abs().mean() < 0.03
    torch.testing.assert_close(items[0]["audio"], items[1]["audio"])


def test_train_augmentation_is_deterministic_per_epoch_and_index(mafw_root):
    cfg = data_cfg(mafw_root, "mafw")
    ds = ClipDataset(read_split(cfg, "train"), cfg, train=True, seed=1)
    a, b = ds[2]["video"], ds[2]["video"]
    torch.testing.assert_close(a, b)
    ds.set_epoch(1)
    assert not torch.equal(a, ds[2]["video"])


def test_imagenet_normalisation_is_optional(mafw_root):
    cfg = data_cfg(mafw_root, "mafw", "data.normalize=imagenet")
    v = ClipDataset(read_split(cfg, "test"), cfg, train=False)[0]["video"]
    assert v.min() < 0  # mean-subtracted


# -- audio -----------------------------------------------------------------------------------

def write_wav(path, rate, channels, freq, seconds=2.0):
    t = np.arange(int(rate * seconds)) / rate
    x = (np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(x[:, None], channels, axis=1).tobytes())


def test_fbank_of_a_tone(tmp_path):
    write_wav(tmp_path / "a.wav", 16000, 1, 1000.0)
    fb = A.fbank(A.read_waveform(tmp_path / "a.wav"))
    assert fb.shape == (198, 128)  # 2 s at 10 ms shift with a 25 ms window
    pcm = (np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000) * 12000).astype(np.int16)  # as written
    ref = A.fbank((pcm / 32768).astype(np.float32))
    torch.testing.assert_close(fb, ref, rtol=0, atol=1e-3)
    norm = A.normalize(A.window(fb, 0, 512))
    assert norm.shape == (512, 128)
    torch.testing.assert_close(norm[300], torch.full((128,), 4.2677393 / (2 * 4.5689974)))  # padding


def test_stereo_44k_track_is_resampled_to_16k_mono(tmp_path):
    write_wav(tmp_path / "s.wav", 44100, 2, 1000.0)
    wav = A.read_waveform(tmp_path / "s.wav", 16000)
    assert wav.ndim == 1 and abs(wav.size - 32000) <= 16
    fb, ref = A.fbank(wav), A.fbank(A.read_waveform(tmp_path / "s.wav", 16000))
    assert int(fb.mean(0).argmax()) == int(ref.mean(0).argmax())
    write_wav(tmp_path / "m.wav", 16000, 1, 1000.0)
    assert int(fb.mean(0).argmax()) == int(A.fbank(A.read_waveform(tmp_path / "m.wav")).mean(0).argmax())


def test_clip_tone_differs_by_class(mafw_root):
    cfg = data_cfg(mafw_root, "mafw")
    ds = ClipDataset(read_split(cfg, "test"), cfg, train=False)
    peaks = [int(ds[i]["audio"][0, :50].mean(0).argmax()) for i in (0, 6)]
    assert peaks[0] < peaks[1]  # class 6's tone is higher than class 0's


# -- bad input ---------------------------------------------------------------------------------

def one_clip_dataset(tmp_path, video, **kw):
    from mma_dfer.data.annotations import Sample

    sample = Sample(clip_id=video.stem, label=0, video=video, frames=tmp_path / "none", wav=tmp_path / "none.wav")
    cfg = data_cfg(tmp_path, "dfew", "data.source=video", *[f"data.{k}={v}" for k, v in kw.items()])
    return ClipDataset([sample], cfg, train=False)


def test_missing_truncated_and_videoless_files_are_named(tmp_path, mafw_root):
    with pytest.raises(ClipError, match=r"nothing.mp4: video file not found"):
        one_clip_dataset(tmp_path, tmp_path / "nothing.mp4")[0]
    data = (mafw_root / "data/clips/00001.mp4").read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 4])
    with pytest.raises(ClipError, match=r"trunc.mp4: cannot decode"):
        one_clip_dataset(tmp_path, tmp_path / "trunc.mp4")[0]
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ClipError, match=r"empty.mp4: cannot decode video"):
        one_clip_dataset(tmp_path, tmp_path / "empty.mp4")[0]


def test_no_audio_stream_follows_the_policy(tmp_path, caplog):
    frames = render_frames(0, 7, 20, 32, np.random.default_rng(0))
    clip = write_mp4(tmp_path / "mute.mp4", frames, None)
    with pytest.raises(ClipError, match=r"mute.mp4: no audio stream \(set data.audio_policy=silence"):
        one_clip_dataset(tmp_path, clip)[0]
    with caplog.at_level(logging.WARNING):
        item = one_clip_dataset(tmp_path, clip, audio_policy="silence")[0]
    assert item["silent"] and "mute.mp4: no audio stream; using silence" in caplog.text
    torch.testing.assert_close(item["audio"], A.normalize(torch.zeros(1, 512, 128)))


def test_short_clip_is_padded_with_its_last_frame(tmp_path):
    frames = render_frames(1, 7, 5, 32, np.random.default_rng(0))
    clip = write_mp4(tmp_path / "short.mp4", frames, np.zeros((1, 8000), np.float32), audio_rate=16000)
    v = one_clip_dataset(tmp_path, clip)[0]["video"]
    assert v.shape[0] == 16 and torch.equal(v[4], v[15])


def test_skip_policy_reports_bad_clips(tmp_path, mafw_root):
    cfg = data_cfg(mafw_root, "mafw", "data.on_error=skip")
    samples = read_split(cfg, "test")[:3]
    samples[1].frames = tmp_path / "gone"
    ds = ClipDataset(samples, cfg, train=False)
    batch = collate([ds[i] for i in range(3)])
    assert batch["label"].tolist() == [samples[0].label, samples[2].label]
    assert batch["skipped"] == [(1, f"{tmp_path / 'gone'}: frame folder not found")]


# -- cache -------------------------------------------------------------------------------------

def test_cache_is_filled_once_and_invalidated_by_a_changed_source(tmp_path, mafw_root, monkeypatch):
    cfg = data_cfg(mafw_root, "mafw", f"data.cache_dir={tmp_path / 'cache'}", "data.source=video")
    samples = read_split(cfg, "test")[:2]
    ds = ClipDataset(samples, cfg, train=False)
    first = ds[0]
    assert (ds.cache.dir / "00001.frames.npy").is_file() and ds.cache.dir.parent == tmp_path / "cache/mafw"
    plain = ClipDataset(samples, data_cfg(mafw_root, "mafw", "data.source=video"), train=False)[0]
    assert (first["video"] - plain["video"]).abs().mean() < 0.02
    torch.testing.assert_close(first["audio"], plain["audio"])
    monkeypatch.setattr(ClipDataset, "decode_all", lambda *a: pytest.fail("cache miss"))
    torch.testing.assert_close(ds[0]["video"], first["video"])
    monkeypatch.undo()
    import os
    st = samples[0].video.stat()
    os.utime(samples[0].video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = []
    orig = ClipDataset.decode_all
    monkeypatch.setattr(ClipDataset, "decode_all", lambda self, s: calls.append(s.clip_id) or orig(self, s))
    ds[0]
    assert calls == ["00001"]


def test_cache_is_keyed_by_the_audio_settings(tmp_path, mafw_root, monkeypatch):
    """An fbank cached at one sample rate or mel-bin count is never served to a run with another;
    each setting keeps its own entries (a run with the first settings still hits)."""
    common = ["data.source=video", f"data.cache_dir={tmp_path / 'cache'}"]
    samples = read_split(data_cfg(mafw_root, "mafw"), "test")[:1]
    ClipDataset(samples, data_cfg(mafw_root, "mafw", *common), train=False)[0]
    default = ClipDataset(samples, data_cfg(mafw_root, "mafw", "data.source=video"), train=False)[0]["audio"]
    for change, shape in (("data.mel_bins=64", (1, 512, 64)), ("data.sample_rate=8000", (1, 512, 128))):
        cached = ClipDataset(samples, data_cfg(mafw_root, "mafw", *common, change), train=False)[0]["audio"]
        plain = ClipDataset(samples, data_cfg(mafw_root, "mafw", "data.source=video", change), train=False)[0]["audio"]
        assert cached.shape == shape and torch.equal(cached, plain)
        assert cached.shape != default.shape or not torch.equal(cached, default)
    assert len(list((tmp_path / "cache/mafw").iterdir())) == 3
    monkeypatch.setattr(ClipDataset, "decode_all", lambda *a: pytest.fail("cache miss"))
    ClipDataset(samples, data_cfg(mafw_root, "mafw", *common), train=False)[0]


def test_cached_clip_without_audio_still_fails_an_error_policy_run(tmp_path):
    """A clip cached by a "silence" run (as prepare fills the cache) records why it has no audio;
    a run with the default policy reading that entry fails naming the clip, as without a cache."""
    frames = render_frames(0, 7, 20, 32, np.random.default_rng(0))
    clip = write_mp4(tmp_path / "mute.mp4", frames, None)
    item = one_clip_dataset(tmp_path, clip, audio_policy="silence", cache_dir=tmp_path / "cache")[0]
    assert item["silent"]
    ds = one_clip_dataset(tmp_path, clip, cache_dir=tmp_path / "cache")
    sample = ds.samples[0]
    assert ds.cache.load("mute", [ds.frame_source(sample), ds.audio_source(sample)])  # the silence run's entry
    with pytest.raises(ClipError, match=r"mute.mp4: no audio stream \(set data.audio_policy=silence"):
        ds[0]


# -- commands ----------------------------------------------------------------------------------

def test_make_data_command(tmp_path, capsys):
    from mma_dfer.cli import main

    assert main(["make-data", "--dataset", "dfew", "--out", str(tmp_path / "d"), "--clips-per-class", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"data.root={(tmp_path / 'd').resolve()}")
    assert len(list((tmp_path / "d/Clip/original").glob("*.mp4"))) == 7
    assert (tmp_path / "d/EmoLabel_DataSplit/train(single-labeled)/set_5.csv").is_file()


def test_parallel_generation_writes_the_same_dataset(tmp_path):
    import hashlib

    from mma_dfer.data.synthetic import make_dataset

    def digest(root):
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
        return h.hexdigest()
    one = make_dataset("mafw", tmp_path / "one", clips_per_class=1, seed=2)
    two = make_dataset("mafw", tmp_path / "two", clips_per_class=1, seed=2, workers=2)
    assert digest(one) == digest(two)


def test_inspect_clip_prints_the_pipeline_and_fails_in_one_line(tmp_path, mafw_root):
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "mma_dfer", "inspect-clip", str(mafw_root / "data/clips/00002.mp4"),
                         "--clips", "2", "--png", str(tmp_path / "c.png")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "clip 1: frame indices" in ok.stdout and "fbank: shape (2, 1, 512, 128)" in ok.stdout
    assert (tmp_path / "c.png").stat().st_size > 1000
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    bad = subprocess.run([sys.executable, "-m", "mma_dfer", "inspect-clip", str(tmp_path / "bad.mp4")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stdout + bad.stderr and bad.stdout == ""
    lines = [line for line in bad.stderr.strip().splitlines() if line.startswith("error: ")]  # our one line
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'bad.mp4'}: cannot decode video")


def test_gpu_augmentation_matches_the_cpu_path(tmp_path, mafw_root):
    from mma_dfer.data import gpu_augment

    common = ["data.source=video", f"data.cache_dir={tmp_path / 'c'}", "data.resolution=112"]
    cpu_cfg = data_cfg(mafw_root, "mafw", *common)
    gpu_cfg = data_cfg(mafw_root, "mafw", *common, "data.gpu_augment=true")
    samples = read_split(cpu_cfg, "train")[:4]
    cpu = collate([ClipDataset(samples, cpu_cfg, train=True)[i] for i in range(4)])
    raw = collate([ClipDataset(samples, gpu_cfg, train=True)[i] for i in range(4)])
    assert raw["video"].dtype == torch.uint8 and raw["aug"].shape == (4, 6)
    out = gpu_augment.apply(raw["video"], raw["aug"], 112)
    assert out.shape == cpu["video"].shape == (4, 16, 3, 112, 112)
    # same random draws; only the resampling differs (roi_align vs antialiased bilinear)
    assert (out - cpu["video"]).abs().mean() < 0.03
    torch.testing.assert_close(raw["audio"], cpu["audio"])


def test_gpu_augment_needs_the_cache(mafw_root):
    from mma_dfer.config import ConfigError

    with pytest.raises(ConfigError, match="data.gpu_augment needs data.cache_dir"):
        data_cfg(mafw_root, "mafw", "data.gpu_augment=true")
