"""CREMA-D and RAVDESS read off their published file names (no split files ship with either).

* CREMA-D: ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv`` (e.g. ``1001_DFA_ANG_XX.flv``):
  actors 1001-1091, twelve sentence codes, emotions ANG DIS FEA HAP NEU SAD, levels LO MD HI XX;
  ``AudioWAV/<same>.wav`` is its 16 kHz audio.
* RAVDESS: ``Actor_NN/MM-VC-EE-II-SS-RR-AA.mp4``: modality (01 audio-video, 02 video-only, 03
  audio-only), vocal channel (01 speech, 02 song), emotion 01-08 (neutral, calm, happy, sad,
  angry, fearful, disgust, surprised), intensity (01 normal, 02 strong), statement (01, 02),
  repetition (01, 02), actor 01-24. Only the audio-video files are clips; ``data.vocal_channel``
  (speech, song or both) picks which.

A file name that does not parse is an error naming the file and the field (skipped, and
returned as such, under ``data.on_error: skip``); an emotion code outside the dataset's classes
is always an error. The speaker (the actor) is each clip's group for the generated folds.
"""
from __future__ import annotations

from pathlib import Path

from mma_dfer.datasets import DatasetError, get

CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")  # the order of the registry's classes
CREMAD_LEVELS = ("LO", "MD", "HI", "XX")
CREMAD_ACTORS = (1001, 1091)
RAVDESS_CHANNELS = {"speech": ("01",), "song": ("02",), "both": ("01", "02")}
RAVDESS_FIELDS = ("modality", "vocal channel", "emotion", "intensity", "statement", "repetition", "actor")
RAVDESS_RANGES = {"modality": (1, 3), "vocal channel": (1, 2), "intensity": (1, 2), "statement": (1, 2),
                  "repetition": (1, 2), "actor": (1, 24)}


class BadName(DatasetError):
    """A file name that does not parse (skipped under ``data.on_error: skip``)."""


class LabelError(DatasetError):
    """A clip's label is outside the dataset's classes (never skipped)."""


def parse_cremad(path: Path) -> tuple[str, int, str]:
    """(clip id, label, actor) of a CREMA-D clip's path."""
    parts = path.stem.split("_")
    if len(parts) != 4:
        raise BadName(f"{path}: not a CREMA-D name <actor>_<sentence>_<emotion>_<level> "
                           f"({len(parts)} fields)")
    actor, sentence, emotion, level = parts
    lo, hi = CREMAD_ACTORS
    if not actor.isdigit() or not lo <= int(actor) <= hi:
        raise BadName(f"{path}: field actor={actor!r} is not an actor {lo}-{hi}")
    if not (len(sentence) == 3 and sentence.isalpha() and sentence.isupper()):
        raise BadName(f"{path}: field sentence={sentence!r} is not a sentence code (e.g. DFA)")
    if level not in CREMAD_LEVELS:
        raise BadName(f"{path}: field level={level!r} is not one of {list(CREMAD_LEVELS)}")
    if emotion not in CREMAD_EMOTIONS:
        raise LabelError(f"{path}: field emotion={emotion!r} is not one of CREMA-D's {list(CREMAD_EMOTIONS)}")
    return path.stem, CREMAD_EMOTIONS.index(emotion), actor


def parse_ravdess(path: Path) -> dict:
    """The seven fields of a RAVDESS file name (two-digit codes) and its clip id; checks that the
    actor matches its ``Actor_NN`` folder."""
    parts = path.stem.split("-")
    if len(parts) != 7:
        raise BadName(f"{path}: not a RAVDESS name MM-VC-EE-II-SS-RR-AA ({len(parts)} fields)")
    fields = dict(zip(RAVDESS_FIELDS, parts))
    for name, value in fields.items():
        if not (len(value) == 2 and value.isdigit()):
            raise BadName(f"{path}: field {name}={value!r} is not a two-digit code")
        if name in RAVDESS_RANGES:
            lo, hi = RAVDESS_RANGES[name]
            if not lo <= int(value) <= hi:
                raise BadName(f"{path}: field {name}={value!r} is not {lo:02d}-{hi:02d}")
    if not 1 <= int(fields["emotion"]) <= len(get("ravdess").classes):
        raise LabelError(f"{path}: field emotion={fields['emotion']!r} is not one of RAVDESS's emotions 01-08")
    if path.parent.name.startswith("Actor_") and path.parent.name != f"Actor_{fields['actor']}":
        raise BadName(f"{path}: field actor={fields['actor']!r} but the file is in {path.parent.name}/")
    return {**fields, "clip_id": path.stem}


def scan(dataset: str, root: Path, vocal_channel: str = "speech", skip: bool = False) -> tuple[list, list]:
    """([(clip id, label, actor)], [skipped (path, reason)]) of every clip under ``root``."""
    items, skipped = [], []
    if dataset == "cremad":
        folder = root / get("cremad").layout["video"]
        files = sorted(folder.glob("*.flv")) if folder.is_dir() else []
        where = f"{folder}/*.flv"
    elif dataset == "ravdess":
        files = sorted(root.glob("Actor_*/*.mp4"))
        where = f"{root}/Actor_NN/*.mp4"
    else:
        raise DatasetError(f"data.dataset={dataset!r} is not read off a file layout")
    for path in files:
        try:
            if dataset == "cremad":
                items.append(parse_cremad(path))
                continue
            f = parse_ravdess(path)
            if f["modality"] == "01" and f["vocal channel"] in RAVDESS_CHANNELS[vocal_channel]:
                items.append((f["clip_id"], int(f["emotion"]) - 1, f["actor"]))
        except BadName as e:
            if not skip:
                raise
            skipped.append((path, str(e)))
    if not items:
        raise DatasetError(f"no {get(dataset).title} clips found at {where}"
                           + (f" (vocal channel {vocal_channel})" if dataset == "ravdess" else ""))
    return items, skipped


def video_path(dataset: str, root: Path, clip_id: str) -> Path:
    """Where a clip's video is in the dataset's own layout."""
    if dataset == "ravdess":
        return root / f"Actor_{clip_id.rsplit('-', 1)[-1]}" / f"{clip_id}.mp4"
    if dataset == "cremad":
        return root / get("cremad").layout["video"] / f"{clip_id}.flv"
    layout = get(dataset).layout
    return root / layout["video"] / f"{clip_id}.mp4"
