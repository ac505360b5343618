"""Data-pipeline benchmark: clips/s of one loader process for each source and augmentation path,
side by side in one run, at each resolution.

    python bench/data_pipeline.py [--clips 24] [--size 224] [--resolutions 112,160,224] [--markdown FILE]

Paths: raw mp4 decode (decord) + CPU augmentation; numbered JPEG frames + CPU augmentation;
the pre-decoded cache (memory-mapped uint8) + CPU augmentation; the cache + batched augmentation
on the accelerator (``data.gpu_augment``; on a CPU-only machine this runs on the CPU and says so);
the packed store (``prepare --pack`` of the clips: their frames encoded once as JPEG, quality 90)
+ CPU augmentation, + batched augmentation on the accelerator (the loader decodes), and + batched
decoding and augmentation on the accelerator (``data.decode=device``; nvjpeg on CUDA, on the CPU
without one). Audio (fbank) is part of every item. The dataset is generated (real H.264/AAC mp4
files and face frames of ``--size`` pixels; the JPEG-frames row reads them as JPEGs of quality
95, what ``prepare --faces mtcnn`` writes), so the numbers are for frames of that size;
``bench/data_scale.py`` measures real face frames at the datasets' real lengths.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)


def measure(ds, n: int, gpu_apply=None, batch: int = 8) -> float:
    """clips/s over the first n items (train mode), batching for the device path. The device
    path is timed warm: one batch first (the first CUDA call creates the context and loads the
    kernels: 6.9 clips/s cold against 3,253 warm on an H200)."""
    import torch

    from mma_dfer.data.dataset import collate

    idx = list(range(min(n, len(ds))))
    if gpu_apply is not None:
        gpu_apply(collate([ds[i] for i in idx[:batch]]))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    t0 = time.perf_counter()
    for start in range(0, len(idx), batch):
        items = [ds[i] for i in idx[start:start + batch]]
        b = collate(items)
        if gpu_apply is not None:
            out = gpu_apply(b)
            if out.is_cuda:
                torch.cuda.synchronize()
    return len(idx) / (time.perf_counter() - t0)


def jpeg_copy(root: Path, out: Path, quality: int = 95) -> Path:
    """The generated dataset with its (lossless PNG) face frames as JPEG files: the fold files
    and clips linked, every frame re-encoded (PIL, ``quality``)."""
    from PIL import Image

    for rel in ("split", "data/clips"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).symlink_to(root / rel, target_is_directory=True)
    for png in sorted((root / "data/faces").rglob("*.png")):
        jpg = out / png.relative_to(root).with_suffix(".jpg")
        jpg.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(png) as img:
            img.convert("RGB").save(jpg, quality=quality)
    return out


def training_loader_rate(root: Path, work: Path, res: int, workers: int, device) -> float:
    """clips/s of the training loader with ``data.gpu_augment`` (batches copied to the device and
    augmented there), after one warm-up pass over the data."""
    import torch

    from mma_dfer.config import load_config
    from mma_dfer.data import gpu_augment
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset
    from mma_dfer.training.sampler import GlobalBatchSampler
    from mma_dfer.training.trainer import train_loader

    c = load_config(None, ["data.dataset=mafw", f"data.root={root}", f"data.resolution={res}", "data.source=video",
                           f"data.cache_dir={work / 'cache'}", "data.gpu_augment=true"]).data
    ds = ClipDataset(read_split(c, "train"), c, train=True)
    sampler = GlobalBatchSampler(len(ds), 8, 8, 0, 1, seed=1)
    rates = []
    for epoch in range(3):  # the first epoch warms the workers, the device and the page cache
        ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for b in train_loader(ds, sampler, workers):
            out = gpu_augment.apply(b["video"].to(device, non_blocking=True), b["aug"], res)
            n += len(b["label"])
        if out.is_cuda:
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0))
    return max(rates[1:])


def main(argv=None) -> int:
    import torch

    from mma_dfer.config import load_config
    from mma_dfer.data import gpu_augment
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset
    from mma_dfer.data.prepare import PackOptions, pack_clips
    from mma_dfer.data.synthetic import make_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=24, help="clips timed per configuration")
    p.add_argument("--size", type=int, default=224, help="frame size of the generated clips")
    p.add_argument("--resolutions", default="112,160,224")
    p.add_argument("--markdown")
    p.add_argument("--loader-workers", type=int, default=0,
                   help="also time the training loader with this many workers (0: skip)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one loader worker = one core
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="mma-dfer-bench-"))
    root = make_dataset("mafw", work / "mafw", clips_per_class=4, seed=0, size=args.size, min_frames=40, max_frames=60)
    jpeg_root = jpeg_copy(root, work / "mafw-jpeg")
    train = read_split(load_config(None, ["data.dataset=mafw", f"data.root={root}"]).data, "train")
    pack_clips("mafw", root, train, "none", 1, PackOptions(), root / "packed", progress=False)  # as prepare --pack
    print(f"generated {root} ({args.size}x{args.size} frames, 40-60 per clip), packed {root / 'packed'}; one "
          f"process, one thread; device augmentation on {device}", flush=True)
    rows = []
    for res in [int(r) for r in args.resolutions.split(",")]:
        def cfg(*extra, data_root=root):
            return load_config(None, ["data.dataset=mafw", f"data.root={data_root}", f"data.resolution={res}",
                                      *extra]).data

        paths = {
            "mp4 decode + CPU aug": cfg("data.source=video"),
            "JPEG frames + CPU aug": cfg("data.source=frames", data_root=jpeg_root),
            "cache + CPU aug": cfg("data.source=video", f"data.cache_dir={work / 'cache'}"),
            f"cache + {device.type.upper()} batched aug": cfg("data.source=video", f"data.cache_dir={work / 'cache'}",
                                                             "data.gpu_augment=true"),
            "packed + CPU aug": cfg("data.source=packed"),
            f"packed + {device.type.upper()} batched aug": cfg("data.source=packed", "data.gpu_augment=true"),
            f"packed + {device.type.upper()} batched decode + aug": cfg("data.source=packed", "data.gpu_augment=true",
                                                                       "data.decode=device"),
        }
        warm = ClipDataset(read_split(paths["cache + CPU aug"], "train"), paths["cache + CPU aug"], train=True)
        for i in range(min(args.clips, len(warm))):  # fill the cache outside the timing
            warm[i]
        for name, c in paths.items():
            ds = ClipDataset(read_split(c, "train"), c, train=True)
            def apply(b, size=res):
                return gpu_augment.apply(b["video"].to(device), b["aug"], size)
            rate = measure(ds, args.clips, apply if c.gpu_augment else None)
            rows.append((res, name, rate))
            print(f"| {res} | {name} | {rate:.1f} |", flush=True)
    table = "| res | path | clips/s (1 core) |\n|---|---|---|\n" + "\n".join(
        f"| {r} | {n} | {v:.1f} |" for r, n, v in rows)
    import platform

    text = (f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, device aug on "
            f"{device}; frames {args.size}px\n\n{table}\n")
    if args.loader_workers:
        loader_rows = [(res, training_loader_rate(root, work, res, args.loader_workers, device))
                       for res in [int(r) for r in args.resolutions.split(",")]]
        text += (f"\nThe training loader (the trainer's own: {args.loader_workers} workers, batches of 8, "
                 f"{'pinned, ' if device.type == 'cuda' else ''}the cache, augmentation on {device}), "
                 "the faster of two passes over the training clips after a warm-up pass:\n\n| res | clips/s |\n|---|---|\n"
                 + "\n".join(f"| {r} | {v:.1f} |" for r, v in loader_rows) + "\n")
    print("\n" + text)
    for res in sorted({r for r, _, _ in rows}):
        got = {n: v for r, n, v in rows if r == res}
        raw = got["mp4 decode + CPU aug"]
        cache = got["cache + CPU aug"]
        print(f"{res} px: cache/raw decode x{cache / raw:.2f}; cores for 500 clips/s: raw {500 / raw:.0f}, "
              f"cache {500 / cache:.0f}")
    if args.markdown:
        atomic_write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
