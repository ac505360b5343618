"""A run's identity: every setting that changes what a run computes, and its fingerprint.

The identity is a flat mapping of dotted fields: every config field except those in
:data:`NOT_IDENTITY` (they change only where a run's files go or how fast it runs), plus the
:data:`DERIVED` fields that the config names only by path (the fold's clip lists, the
pretrained files' contents) or that live in the DeepSpeed JSON (precision, ZeRO stage). Its
fingerprint is a hash of that mapping. Training writes both into every checkpoint, the run
folder (``identity.json``), ``result.json`` and the TensorBoard hparams; a checkpoint or a
finished result is reused only under the same fingerprint, and a mismatch names each field
that differs (:func:`differences`). Nothing here imports torch: the aggregator and the report
compare identities too.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from mma_dfer.precision import precision_of
from mma_dfer.utils import sha256_file

VERSION = 1  # bump when the definition changes: older identities then never match

# Config fields left out of the identity, with the reason (docs/training.md, "What a run folder holds").
NOT_IDENTITY = {
    "output_dir": "where the run folder is",
    "name": "a label",
    "data.root": "where the dataset is; what the fold lists is data.split_train/data.split_test",
    "data.annotations": "the list format; what it lists is data.split_train/data.split_test",
    "data.train_list": "a path; what it lists is data.split_train",
    "data.test_list": "a path; what it lists is data.split_test",
    "data.manifest": "a path; the file's content is data.manifest_sha256",
    "data.num_workers": "loader processes",
    "data.cache_dir": "where the cache is; whether frames come through it is data.cached",
    "model.video_checkpoint": "a path; the file's content is model.video_checkpoint_sha256",
    "model.audio_checkpoint": "a path; the file's content is model.audio_checkpoint_sha256",
    "model.grad_checkpointing": "recomputes the same activations in the backward pass (memory)",
    "model.fused_attn": "the same attention through another kernel (speed)",
    "train.micro_batch_size": "how the global batch is cut over ranks and accumulation steps",
    "train.validate_every": "evaluations between epochs change no weight and draw no random number",
    "train.log_every": "log cadence",
    "train.compile": "speed: the same step (its drop-path masks are other draws of the same distribution)",
    "train.compile_backend": "speed",
    "train.collective_timeout_s": "how long a lost rank is waited for",
    "eval.batch_size": "speed",
    "eval.ci_level": "how result.json's intervals are computed from the same predictions",
    "eval.ci_resamples": "how result.json's intervals are computed from the same predictions",
    "eval.ci_seed": "how result.json's intervals are computed from the same predictions",
}
# Identity fields that are not config fields.
DERIVED = {
    "identity.version": "the version of this definition",
    "data.split_train": "sha256 of the fold's train list (clip ids and labels, in order)",
    "data.split_test": "sha256 of the fold's test list (clip ids and labels, in order)",
    "data.cached": "whether frames come through data.cache_dir (stored at 224 px, cropped from there)",
    "data.packed": "data.source=packed: the settings the store was made with (how its JPEGs were made, "
                   "sample rate, mel bins; null otherwise)",
    "model.video_checkpoint_sha256": "sha256 of the MAE-Face file (null: random init)",
    "model.audio_checkpoint_sha256": "sha256 of the AudioMAE file (null: random init)",
    "deepspeed.precision": "float32, bfloat16/float16 (whole module) or autocast-bfloat16/-float16",
    "deepspeed.zero_stage": "ZeRO stage 0-3",
    "init.weights_sha256": "--init-from: sha256 of the trainable weights the run started from (null: none)",
    "data.manifest_sha256": "data.dataset=manifest: sha256 of the manifest CSV (absent otherwise)",
}
# Fields added after VERSION 1, with the value that leaves them out of the identity: a run that
# does not use them (every DFEW and MAFW run) keeps the identity and fingerprint it had before.
LATER = {
    "data.class_names": None,
    "data.num_folds": None,
    "data.fold_seed": 0,
    "data.vocal_channel": "speech",
    "data.manifest_sha256": None,
}
# Fields that differ between the folds of one table row (the aggregator compares the rest).
PER_FOLD = ("data.fold", "data.split_train", "data.split_test")
# Fields that differ between the seeds of one table row (seeds as a sweep axis).
PER_SEED = ("train.seed",)
# The data fields that shape the model (the input geometry): like the model's own fields, an
# evaluation must have the checkpoint's. Its other data fields, clips and precision are its own.
SHAPE_FIELDS = ("data.resolution", "data.num_frames", "data.audio_frames", "data.mel_bins")


class IdentityError(RuntimeError):
    """A checkpoint, result or run folder was made by another config; names each field."""


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_fields(cfg) -> dict:
    """The config's own identity fields (its resolved values, lists for tuples)."""
    return {k: v for k, v in flatten(cfg.to_dict()).items() if k not in NOT_IDENTITY}


def split_digest(samples: list) -> str:
    """sha256 of one fold list: which clips, with which labels, in which order."""
    rows = [[s.clip_id, int(s.label)] for s in samples]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


_FILE_HASHES: dict = {}


def file_sha256(path: Optional[str]) -> Optional[str]:
    """sha256 of a file's bytes (None for None); computed once per process per (path, size, mtime)."""
    if path is None:
        return None
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(path)
    return _FILE_HASHES[key]


def packed_settings(data) -> Optional[dict]:
    """The settings of the packed store a ``data.source=packed`` run reads (None otherwise)."""
    if data.source != "packed":
        return None
    from mma_dfer.data.packed import store_settings  # lazy: identity imports no torch (aggregate, report); packed does

    return store_settings(data.root)


def run_identity(cfg, ds: dict, train: list, test: list, init_weights: Optional[str] = None) -> dict:
    """The identity of a training run of ``cfg`` under the DeepSpeed JSON ``ds`` (as the trainer
    fills it) on the fold's ``train``/``test`` samples; ``init_weights``: --init-from's digest."""
    out = config_fields(cfg)
    out.update({
        "identity.version": VERSION,
        "data.split_train": split_digest(train),
        "data.split_test": split_digest(test),
        "data.cached": bool(cfg.data.cache_dir),
        "data.packed": packed_settings(cfg.data),
        "model.video_checkpoint_sha256": file_sha256(cfg.model.video_checkpoint),
        "model.audio_checkpoint_sha256": file_sha256(cfg.model.audio_checkpoint),
        "deepspeed.precision": precision_of(ds),
        "deepspeed.zero_stage": int(ds.get("zero_optimization", {}).get("stage", 0)),
        "init.weights_sha256": init_weights,
        "data.manifest_sha256": file_sha256(cfg.data.manifest),
    })
    return dict(sorted((k, v) for k, v in out.items() if k not in LATER or v != LATER[k]))


def fingerprint(identity: dict) -> str:
    """A short hex digest of an identity (64 bits of sha256 of its canonical JSON)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def group_fingerprint(identity: dict) -> str:
    """The fingerprint of what the folds and seeds of one table row share (identity without
    PER_FOLD and PER_SEED)."""
    return fingerprint({k: v for k, v in identity.items() if k not in PER_FOLD + PER_SEED})


_ABSENT = object()


def _show(value) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def differences(saved: dict, now: dict, where: str = "the checkpoint", now_label: str = "now",
                skip=()) -> list[str]:
    """``field: <saved> in <where>, <now> now`` for every field that differs (``skip`` aside)."""
    lines = []
    for key in sorted((set(saved) | set(now)) - set(skip)):
        a, b = saved.get(key, _ABSENT), now.get(key, _ABSENT)
        if a != b:
            lines.append(f"{key}: {_show(a)} in {where}, {_show(b)} {now_label}")
    return lines


def check_same(saved: Optional[dict], now: dict, what: str, where: str, hint: str = "") -> None:
    """Raise :class:`IdentityError` unless ``saved`` (the identity recorded by ``what``, e.g. a
    checkpoint path) equals ``now``; ``where`` words it in the message ("the checkpoint")."""
    if saved is None:
        raise IdentityError(f"{what} records no run identity (made before run identities, or not by "
                            f"this project's trainer): it cannot be checked against this config. {hint}".strip())
    if not isinstance(saved, dict):
        raise IdentityError(f"{what}: its run identity is not a mapping")
    diff = differences(saved, now, where)
    if diff:
        count = "1 field differs" if len(diff) == 1 else f"{len(diff)} fields differ"
        raise IdentityError(f"{what} was made by another config ({count}):\n  " + "\n  ".join(diff)
                            + (f"\n{hint}" if hint else ""))
