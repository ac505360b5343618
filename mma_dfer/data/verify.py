"""``verify``: check a prepared dataset fold by fold before spending GPU hours on it.

Every listed clip must exist and decode (its first and last frame), have at least one frame,
have audio (or the configured policy must allow silence), and a label in range; with
``data.source: packed``, be in the store with intact frames and fbank. Per fold, the
train/test counts and the class histogram are printed next to the numbers the datasets publish.
Exit code 1 with the list of problems, 0 when there are none.
"""
from __future__ import annotations

from collections import Counter

from tqdm import tqdm

from mma_dfer.config import load_config
from mma_dfer.data import audio as A
from mma_dfer.data import video as V
from mma_dfer.data.annotations import AnnotationError, Sample, read_split
from mma_dfer.data.dataset import ClipDataset
from mma_dfer.data.packed import StoreError
from mma_dfer.data.video import ClipError
from mma_dfer.datasets import class_names, get as dataset_info, num_folds


def check_clip(ds: ClipDataset, sample: Sample) -> list[str]:
    """Problems of one clip (empty list when it is usable)."""
    if ds.store is not None:
        return check_packed_clip(ds, sample)
    problems = []
    src = ds.frame_source(sample)
    try:
        if ds.cfg.source == "video":
            vr = V.open_video(src)
            n = len(vr)
            V.read_video_frames(vr, src, [0, n - 1])
        else:
            files = V.list_frames(src)
            n = len(files)
            V.read_frame_files([files[0], files[-1]])
        if n < 1:
            problems.append(f"{src}: no frames")
    except ClipError as e:
        problems.append(str(e))
    try:
        A.read_waveform(ds.audio_source(sample), ds.cfg.sample_rate)
    except A.NoAudioError as e:
        if ds.cfg.audio_policy == "error":
            problems.append(f"{e} (data.audio_policy=error)")
    except ClipError as e:
        if not (ds.cfg.audio_policy == "silence" and not ds.audio_source(sample).exists()):
            problems.append(str(e))
    if not 0 <= sample.label < len(class_names(ds.cfg)):
        problems.append(f"{sample.clip_id}: label {sample.label} out of range")
    return problems


def check_packed_clip(ds: ClipDataset, sample: Sample) -> list[str]:
    """A clip of the packed store: listed, its first and last frames and its fbank intact (their
    checksums), its audio as the policy needs."""
    problems = []
    try:
        clip = ds.store.clip(sample.clip_id)
        clip.decode([0, clip.count - 1])
        clip.fbank()
        if clip.absent is not None and ds.cfg.audio_policy == "error":
            problems.append(f"{clip.absent['path']}: {clip.absent['reason']} (data.audio_policy=error)")
    except ClipError as e:
        problems.append(str(e))
    if not 0 <= sample.label < len(class_names(ds.cfg)):
        problems.append(f"{sample.clip_id}: label {sample.label} out of range")
    return problems


def verify(config: str | None, overrides: list[str], folds: list[int], progress: bool = True) -> list[str]:
    problems: list[str] = []
    checked: dict[str, list[str]] = {}
    for fold in folds:
        cfg = load_config(config, [*overrides, f"data.fold={fold}"]).data
        names = class_names(cfg)
        counts = {}
        for split in ("train", "test"):
            try:
                samples = read_split(cfg, split)
            except AnnotationError as e:
                problems.append(str(e))
                continue
            try:
                ds = ClipDataset(samples, cfg, train=False)
            except StoreError as e:  # the packed store is missing or made with other settings
                problems.append(str(e))
                continue
            it = samples
            if progress:
                it = tqdm(samples, desc=f"fold {fold} {split}", leave=False)
            for s in it:
                if s.clip_id not in checked:
                    checked[s.clip_id] = check_clip(ds, s)
                problems += checked[s.clip_id]
            counts[split] = Counter(s.label for s in samples)
        pub = dataset_info(cfg.dataset).published.get(fold)  # (train, test) as published
        n_train, n_test = (sum(counts.get(k, Counter()).values()) for k in ("train", "test"))
        print(f"fold {fold}: train {n_train} test {n_test}" + (f"   (published: {pub[0]} / {pub[1]})" if pub else ""))
        for i, name in enumerate(names):
            print(f"   {name:<15} train {counts.get('train', Counter())[i]:>6}  test {counts.get('test', Counter())[i]:>6}")
    return sorted(set(problems))


def run(args) -> int:
    if args.fold == "all":  # every fold of the dataset's protocol
        folds = list(range(1, num_folds(load_config(args.config, args.overrides).data) + 1))
    else:
        folds = [int(args.fold)]
    problems = verify(args.config, args.overrides, folds)
    if problems:
        print(f"{len(problems)} problems:")
        for p in problems:
            print(f"  {p}")
        return 1
    print("no problems found")
    return 0
