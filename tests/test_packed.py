"""The packed store (prepare --pack, data.source=packed): the same items as the JPEG-frames path,
reads of only the sampled bytes, resume after a kill, corrupt entries and foreign settings
named, and --shard pieces that merge into one run's output."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mma_dfer.data import packed
from mma_dfer.data.annotations import read_split
from mma_dfer.data.dataset import ClipDataset, collate
from mma_dfer.data.pack import PackEntry, PackWriter, pack_settings
from mma_dfer.data.packed import PackedStore, StoreError, store_settings
from mma_dfer.data.prepare import PackOptions, merge_pieces, prepare
from mma_dfer.data import video as V
from mma_dfer.data.video import ClipError
from tests.conftest import ROOT, data_cfg, run_train

SMALL_SHARDS = PackOptions(shard_bytes=150_000)  # several shards from a few clips


@pytest.fixture(scope="module")
def dfew_packed(dfew_root, tmp_path_factory):
    """The generated DFEW (JPEG frame folders) prepared and packed: frames as shipped."""
    out = tmp_path_factory.mktemp("dfew_packed")
    s = prepare("dfew", dfew_root, out, pack=SMALL_SHARDS, progress=False)
    assert (s["clips"], s["packed"], s["pack_failed"]) == (35, 35, [])
    return out


def cfg(root, *extra):
    return data_cfg(root, "dfew", "data.resolution=112", *extra)


def clip_bytes(root):
    """Every clip of a store as what a reader gets: all its frames' bytes and its fbank."""
    store = PackedStore(root, data_cfg(root, store_settings(root)["dataset"], "data.source=packed"))
    out = {}
    for clip_id in store.clips:
        clip = store.clip(clip_id)
        data, lengths = clip.jpeg(np.arange(clip.count))
        fb = clip.fbank()
        out[clip_id] = (data.numpy().tobytes(), lengths.tolist(), clip.entry["size"], clip.absent,
                        None if fb is None else fb.numpy().tobytes())
    return out


# -- the same items as the other paths -------------------------------------------------------------

def test_packed_items_equal_the_jpeg_frames_path(dfew_packed):
    frames_cfg, packed_cfg = cfg(dfew_packed, "data.source=frames"), cfg(dfew_packed, "data.source=packed")
    samples = read_split(frames_cfg, "train")[:6]
    for train, clips in ((True, 1), (False, 1), (False, 2)):
        a = ClipDataset(samples, frames_cfg, train=train, clips=clips)
        b = ClipDataset(samples, packed_cfg, train=train, clips=clips)
        for epoch in (0, 1) if train else (0,):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            for i in range(len(samples)):
                x, y = a[i], b[i]
                assert torch.equal(x["video"], y["video"]) and torch.equal(x["audio"], y["audio"]), (train, clips, i)


def test_device_decoding_gives_the_loaders_frames(dfew_packed):
    """data.decode=device ships JPEG bytes; decoded (here on the CPU, nvjpeg on CUDA) they are
    the frames the loader decodes, with the same augmentation draws and audio."""
    samples = read_split(cfg(dfew_packed), "train")[:5]
    common = ["data.source=packed", "data.gpu_augment=true"]
    loader = collate([ClipDataset(samples, cfg(dfew_packed, *common), train=True)[i] for i in range(5)])
    device = collate([ClipDataset(samples, cfg(dfew_packed, *common, "data.decode=device"), train=True)[i]
                      for i in range(5)])
    assert isinstance(device["video"], packed.JpegClips) and len(device["video"]) == 5
    assert loader["video"].dtype == torch.uint8 and loader["video"].shape == (5, 16, 3, 64, 64)
    assert torch.equal(device["video"].to("cpu"), loader["video"])
    assert torch.equal(device["aug"], loader["aug"]) and torch.equal(device["audio"], loader["audio"])


def test_a_clip_read_opens_at_most_its_shard_and_reads_only_its_sampled_frames(dfew_packed, monkeypatch):
    """A shard is opened once per process (then every read of a clip in it opens nothing), and
    a training read fetches the distinct sampled frames and the fbank: one pread each."""
    c = cfg(dfew_packed, "data.source=packed")
    samples = read_split(c, "train")[:8]
    ds = ClipDataset(samples, c, train=True)
    opened, read = [], []
    real_open, real_preadv = os.open, os.preadv
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: read.append(sum(len(b) for b in bufs)) or
                        real_preadv(fd, bufs, off))
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail(f"opened {a[0]}"))
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i, sample in enumerate(samples):
            read.clear()
            ds[i]
            entry = ds.store.clips[sample.clip_id]
            picked = np.unique(V.train_indices(entry["count"], 16, np.random.default_rng([ds.seed, epoch, i])))
            table = ds.store.table(entry["shard"])
            expected = int(table["length"][entry["first"] + picked].sum()) + entry["fbank"][1] * 128 * 4
            assert sum(read) == expected and len(read) == len(picked) + 1
    shards = {ds.store.clips[s.clip_id]["shard"] for s in samples}
    assert sorted(opened) == sorted(ds.store.shards[k]["data"] for k in shards)  # epoch 1 opened nothing


# -- damage and foreign settings -------------------------------------------------------------------

def copy_store(src, dst):
    shutil.copytree(src / "packed", dst / "packed")
    shutil.copytree(src / "EmoLabel_DataSplit", dst / "EmoLabel_DataSplit")
    return dst


def test_a_corrupt_entry_is_named_or_skipped(dfew_packed, tmp_path):
    root = copy_store(dfew_packed, tmp_path)
    c = cfg(root, "data.source=packed")
    samples = read_split(c, "test")[:3]
    store = PackedStore(root, c)
    victim = store.clips[samples[1].clip_id]
    shard = root / "packed" / json.loads((root / "packed/index.json").read_text())["shards"][victim["shard"]]["path"]
    k = int(V.test_indices(victim["count"], 16)[3])  # a frame the test-time sampling reads
    offset = int(store.table(victim["shard"])["offset"][victim["first"] + k]) + 100
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ClipError, match=rf"{shard.name}: clip {samples[1].clip_id} frame {k}: checksum mismatch"):
        ClipDataset(samples, c, train=False)[1]
    skip = ClipDataset(samples, cfg(root, "data.source=packed", "data.on_error=skip"), train=False)
    batch = collate([skip[i] for i in range(3)])
    assert batch["index"].tolist() == [0, 2] and batch["skipped"][0][0] == 1 and "checksum" in batch["skipped"][0][1]
    fb_offset = victim["fbank"][0] + 8
    data[offset] ^= 0xFF
    data[fb_offset] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ClipError, match=rf"clip {samples[1].clip_id} fbank: checksum mismatch"):
        ClipDataset(samples, c, train=False)[1]
    from mma_dfer.data.verify import verify

    problems = verify(None, ["data.dataset=dfew", f"data.root={root}", "data.source=packed"], [1], progress=False)
    assert problems == [f"{shard}: clip {samples[1].clip_id} fbank: checksum mismatch (a corrupt entry; pack again "
                        "with --force)"]
    shard.write_bytes(bytes(data[:-10]))  # truncated: refused when the store is opened
    with pytest.raises(StoreError, match=rf"{shard.name}: shard is \d+ bytes, the index says \d+"):
        ClipDataset(samples, c, train=False)


def test_the_store_refuses_other_settings_and_says_its_own(dfew_packed, tmp_path):
    settings = store_settings(dfew_packed)
    assert settings == {"format": packed.PACK_FORMAT, "dataset": "dfew", "frames": "files", "jpeg_quality": 90,
                        "size": None, "sample_rate": 16000, "mel_bins": 128}
    with pytest.raises(StoreError, match=r"index.json: made with other settings: data.sample_rate=8000 but the store "
                                         r"has 16000; data.mel_bins=64 but the store has 128"):
        PackedStore(dfew_packed, cfg(dfew_packed, "data.source=packed", "data.mel_bins=64", "data.sample_rate=8000"))
    with pytest.raises(StoreError, match=r"packed/index.json: no packed store \(write one with: python -m mma_dfer "
                                         r"prepare"):
        ClipDataset([], cfg(tmp_path, "data.source=packed"), train=False)
    root = copy_store(dfew_packed, tmp_path / "copy")
    index = json.loads((root / "packed/index.json").read_text())
    (root / "packed/index.json").write_text(json.dumps({**index, "format": 0}))
    with pytest.raises(StoreError, match=r"store format 0, this code reads format 1"):
        store_settings(root)
    (root / "packed/index.json").write_text(json.dumps(index)[:1000])
    with pytest.raises(StoreError, match=r"unreadable index"):
        store_settings(root)
    # packing again into the same folder with other settings is refused, not mixed
    with pytest.raises(StoreError, match=r"shard-00000.json: this store was packed with .*'jpeg_quality': 90.*"
                                         r"this pack asks for .*'jpeg_quality': 80.*use --force"):
        PackWriter(root / "packed", {**index["settings"], "jpeg_quality": 80})


# -- writing: resume, a torn tail, pieces -----------------------------------------------------------

def entry(clip_id, n, seed, bins=128):
    rng = np.random.default_rng(seed)
    return PackEntry(clip_id, [rng.bytes(int(rng.integers(500, 900))) for _ in range(n)], (8, 8),
                     rng.standard_normal((30, bins)).astype(np.float32), None, [[clip_id, n, seed]])


def test_a_torn_partial_shard_is_cut_after_its_last_whole_clip(tmp_path):
    """A kill leaves the shard being written with a torn tail: bytes of a clip not journalled,
    a half journal line, and (a disk that lost a write) a journalled clip with damaged bytes.
    The next writer keeps the whole clips before those, and the store it finishes is the one an
    uninterrupted writer makes, byte for byte."""
    settings = pack_settings("dfew", "files", 90, None, 16000, 128)
    clean = PackWriter(tmp_path / "clean", settings, shard_bytes=100_000)
    for i in range(12):
        clean.add(entry(f"{i:05d}", 10, i))
    reference = clean.finish()
    w = PackWriter(tmp_path / "torn", settings, shard_bytes=100_000)
    for i in range(8):
        w.add(entry(f"{i:05d}", 10, i))
    w.close()
    (partial,) = (tmp_path / "torn").glob(".shard-*.bin.partial")
    (journal,) = (tmp_path / "torn").glob(".shard-*.journal")
    records = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert len(records) >= 2 and (tmp_path / "torn/shard-00000.json").is_file()
    with open(partial, "ab") as f:
        f.write(b"half a clip")
    with open(journal, "a") as f:
        f.write('{"clip": "00008", "rows": [[')
    damaged = records[-1]  # the last journalled clip's bytes: it goes too
    with open(partial, "r+b") as f:
        f.seek(damaged["rows"][3][0])
        f.write(b"\0\0\0\0")
    again = PackWriter(tmp_path / "torn", settings, shard_bytes=100_000)
    assert again.resumed == len(records) - 1
    assert sorted(again.clips) == [f"{i:05d}" for i in range(7)] and partial.stat().st_size == damaged["rows"][0][0]
    for i in range(7, 12):
        again.add(entry(f"{i:05d}", 10, i))
    assert again.finish() == reference
    assert sorted(os.listdir(tmp_path / "clean")) == sorted(os.listdir(tmp_path / "torn"))
    for name in os.listdir(tmp_path / "clean"):
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "torn" / name).read_bytes(), name


def test_a_killed_pack_resumes_and_ends_as_a_clean_one(mafw_root, tmp_path):
    """MAFW without face crops: the store encodes the clips' decoded frames. prepare --pack is
    SIGKILLed while it packs, run again, and the store equals one packed without a kill."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for out in (clean, killed):
        prepare("mafw", mafw_root, out, progress=False)  # the wavs, outside the timed part
    prepare("mafw", mafw_root, clean, pack=PackOptions(shard_bytes=60_000), progress=False)
    cmd = [sys.executable, "-m", "mma_dfer", "prepare", "--dataset", "mafw", "--raw", str(mafw_root), "--out",
           str(killed), "--pack", "--pack-shard-mb", str(60_000 / 2**20)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 300
    while not (killed / "packed/shard-00001.json").is_file():
        assert time.time() < end and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "packed/index.json").exists()  # nothing a reader would use
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    kept = int(rerun.stdout.split(" kept from an earlier pack")[0].rsplit("(", 1)[1])
    assert 2 <= kept < 55 and "55 packed into" in rerun.stdout
    assert clip_bytes(killed) == clip_bytes(clean)
    assert store_settings(killed) == store_settings(clean) == {
        "format": 1, "dataset": "mafw", "frames": "video", "jpeg_quality": 90, "size": 224, "sample_rate": 16000,
        "mel_bins": 128}


def test_a_changed_source_is_packed_again_and_a_broken_one_is_not_served_stale(dfew_root, tmp_path):
    out = tmp_path / "out"
    prepare("dfew", dfew_root, out, pack=SMALL_SHARDS, progress=False)
    c = cfg(out, "data.source=packed")
    changed, broken = read_split(c, "test")[:2]
    before = ClipDataset([changed], c, train=False)[0]["audio"]
    wav = out / "Clip/wav" / f"{changed.clip_id}.wav"
    data = bytearray(wav.read_bytes())
    data[-2000:] = bytes(2000)  # the end of the clip's audio silenced
    wav.write_bytes(bytes(data))
    (out / "Clip/wav" / f"{broken.clip_id}.wav").write_bytes(b"RIFF, but not a wav")
    s = prepare("dfew", dfew_root, out, pack=SMALL_SHARDS, progress=False)
    assert s["pack_reused"] == 33 and s["packed"] == 34 and [c for c, _ in s["pack_failed"]] == [broken.clip_id]
    assert f"{broken.clip_id}\tpack: " in (out / "prepare_failed.txt").read_text()
    after = ClipDataset([changed], c, train=False)[0]["audio"]
    from mma_dfer.data.cache import source_stamp

    assert not torch.equal(before, after)
    assert PackedStore(out, c).clips[changed.clip_id]["sources"] == source_stamp([changed.frames, wav])
    with pytest.raises(ClipError, match=rf"clip {broken.clip_id} is not in the packed store"):
        ClipDataset([broken], c, train=False)[0]


def test_shard_pieces_merge_into_the_output_of_one_run(dfew_root, dfew_packed, tmp_path):
    out = tmp_path / "pieces"
    with pytest.raises(FileNotFoundError, match=r"2 of 2 pieces have not finished"):
        merge_pieces(out, 2)
    for i in range(2):
        s = prepare("dfew", dfew_root, out, pack=SMALL_SHARDS, piece=(i, 2), progress=False)
        assert s["clips"] == s["packed"] == (18, 17)[i]
    merged = merge_pieces(out, 2)
    one = json.loads((dfew_packed / "prepare_summary.json").read_text())
    assert merged == one == json.loads((out / "prepare_summary.json").read_text())
    for name in ("prepare_failed.txt", "prepare_no_face.txt", "prepare_no_audio.txt"):
        assert (out / name).read_text() == (dfew_packed / name).read_text()
    wavs = sorted((dfew_packed / "Clip/wav").iterdir())
    assert [p.read_bytes() for p in wavs] == [(out / "Clip/wav" / p.name).read_bytes() for p in wavs]
    assert clip_bytes(out) == clip_bytes(dfew_packed) and store_settings(out) == store_settings(dfew_packed)
    c = cfg(out, "data.source=packed")
    samples = read_split(c, "test")
    a, b = ClipDataset(samples, c, train=False), ClipDataset(samples, cfg(dfew_packed, "data.source=packed"), train=False)
    assert all(torch.equal(a[i]["video"], b[i]["video"]) for i in range(len(samples)))


# -- training ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_trains_and_evaluates_from_the_store(dfew_packed, tmp_path):
    """launch/train.py with data.source=packed, the batches' JPEGs decoded and augmented "on the
    device" (the CPU here: the trainer's own .to(device) of a JpegClips batch), evaluation
    decoding in the loader; the items are the JPEG-frames path's (tested above), so the metrics
    are what that path gives."""
    out = tmp_path / "run"
    run_train("--config", str(ROOT / "configs/demo.yaml"), "--set", f"data.root={dfew_packed}",
              "--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=3", "--set", "data.source=packed",
              "--set", "data.gpu_augment=true", "--set", "data.decode=device", "--set", f"output_dir={out}")
    result = json.loads((out / "result.json").read_text())
    assert result["num_test_clips"] == 7 and result["epoch"] == 1 and result["skipped_test_clips"] == []
    assert 0 <= result["uar"] <= 100 and result["uar_2clip"] is not None
    # the store's settings are part of the run's identity, and so is where its frames are decoded
    from mma_dfer.data.packed import store_settings

    identity = result["run_identity"]
    assert identity["data.packed"] == store_settings(dfew_packed) and identity["data.decode"] == "device"
