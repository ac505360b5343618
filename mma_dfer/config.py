"""Typed configuration: YAML files loaded into dataclasses, dotted overrides, validation.

One source of truth for every hyper-parameter. Each field's default is the paper's value
(or, where the paper is silent, the value of the authors' code, which produced the paper's
numbers). A YAML file may name a ``base:`` file (relative to itself, or a shipped config's
name) whose values it overrides; ``--set section.field=value`` overrides come last. Unknown keys and values of
the wrong type are errors that name the key, so a typo can never be silently ignored.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from mma_dfer import datasets, stats
from mma_dfer.resources import ResourceError, config_path
from mma_dfer.utils import atomic_write_text

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Fields that were removed, with what replaces them (a YAML that still sets one gets this message).
RETIRED = {
    "model.frozen_dtype": "the frozen weights follow the DeepSpeed JSON's precision now: a "
                          "torch_autocast JSON (ds_configs/zero*_bf16.json) stores them in its dtype",
    "model.compile_blocks": "use train.compile (the whole training step, not per-block branches)",
    "model.compile_backend": "use train.compile_backend",
}


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the field."""


@dataclass
class ModelConfig:
    """The MMA-DFER network (paper section 3; authors' code where the text leaves room)."""

    # Encoder geometry: ViT-B/16 for both AudioMAE and MAE-Face.
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    # Stochastic depth inside the *frozen* encoders, active in training (authors' code).
    drop_path_rate: float = 0.1
    # Pre-training geometry of the checkpoints, used to resize their positional embeddings.
    video_pretrain_size: int = 224
    audio_pretrain_frames: int = 1024
    # Pretrained encoder checkpoints (MAE-Face, AudioMAE AS-2M pretrained). None: random
    # weights, for tests and the CPU demo only.
    video_checkpoint: Optional[str] = None
    audio_checkpoint: Optional[str] = None
    # Learnable prompts: M tokens per modality, L progressive updates (paper eq. 1).
    num_prompts: int = 6
    prompt_updates: int = 2
    # Std of the positional-embedding rows of the prompt slots (authors: randn, std 1).
    prompt_pos_std: float = 1.0
    # Fusion after every encoder block: "bottleneck" (the paper's FB), "none" (Table 3/4 without
    # FB), or Table 3's alternatives "add", "mult" (cross-attention both ways), "mult_concat"
    # (one Transformer layer over both modalities' tokens).
    fusion: str = "bottleneck"
    fusion_dim: int = 128  # FB latent width d (Table 6); MULT / MULT-concat total attention width
    fusion_heads: int = 2  # MULT / MULT-concat heads (paper: 2 heads, total width 128)
    fusion_mlp_dim: int = 512  # MULT-concat's feed-forward width (4 x fusion_dim)
    # Table 2's intermediate temporal adaptors after every fusion block: width d (64/128/256), 0 = off.
    ita_dim: int = 0
    ita_heads: int = 2
    ita_temporal_embed: bool = False  # learned per-frame embeddings before the ITA's attention
    # Joint Adaptation Module width and the Multimodal Temporal Transformer.
    temporal: str = "mtt"  # "mtt" or "mean" (Table 4 rows without MTT)
    temporal_dim: int = 512
    temporal_layers: int = 1
    temporal_heads: int = 8
    temporal_head_dim: int = 64
    temporal_mlp_dim: int = 1024
    # Which encoders run: Table 5's unimodal rows use "video" or "audio".
    modalities: str = "audiovisual"
    trainable_pos_embed: bool = True
    # Memory lever: recompute the frozen encoder blocks in the backward pass.
    grad_checkpointing: bool = False
    # Fused scaled-dot-product attention in the encoder blocks (False: timm's explicit softmax).
    fused_attn: bool = True
    # Filled from data.dataset's classes (mma_dfer.datasets.class_names) when left empty.
    num_classes: Optional[int] = None

    def validate(self) -> None:
        _choice("model.fusion", self.fusion, ("bottleneck", "none", "add", "mult", "mult_concat"))
        _choice("model.temporal", self.temporal, ("mtt", "mean"))
        _choice("model.modalities", self.modalities, ("audiovisual", "video", "audio"))
        _positive("model.embed_dim", self.embed_dim)
        _positive("model.depth", self.depth)
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"model.embed_dim={self.embed_dim} is not divisible by model.num_heads={self.num_heads}")
        if self.num_prompts < 0 or self.prompt_updates < 0:
            raise ConfigError("model.num_prompts and model.prompt_updates must be >= 0")
        if self.prompt_updates:
            if self.num_prompts == 0 or self.num_prompts % self.prompt_updates:
                raise ConfigError(
                    f"model.num_prompts={self.num_prompts} must be a positive multiple of "
                    f"model.prompt_updates={self.prompt_updates} (paper eq. 1: M^l = M / L)")
            if self.depth % self.prompt_updates:
                raise ConfigError(
                    f"model.prompt_updates={self.prompt_updates} must divide model.depth={self.depth} "
                    "(updates are evenly spaced: after blocks 1, 1+depth/L, ...)")
        if self.fusion != "none" and self.modalities != "audiovisual":
            raise ConfigError(f"model.fusion={self.fusion!r} needs both encoders; set model.fusion=none "
                              f"for model.modalities={self.modalities!r}")
        _positive("model.fusion_dim", self.fusion_dim)
        if self.fusion in ("mult", "mult_concat"):
            _divides("model.fusion_heads", self.fusion_heads, "model.fusion_dim", self.fusion_dim)
            _positive("model.fusion_mlp_dim", self.fusion_mlp_dim)
        if self.ita_dim < 0:
            raise ConfigError(f"model.ita_dim={self.ita_dim} must be >= 0 (0: no intermediate temporal adaptors)")
        if self.ita_dim:
            if self.modalities == "audio":
                raise ConfigError("model.ita_dim attends over the video frames and needs the video branch; "
                                  "set model.ita_dim=0 for model.modalities='audio'")
            _divides("model.ita_heads", self.ita_heads, "model.ita_dim", self.ita_dim)
        _positive("model.temporal_dim", self.temporal_dim)


@dataclass
class DataConfig:
    """Where the clips are and how they become tensors (paper section 4.2)."""

    dataset: str = "dfew"
    root: Optional[str] = None
    fold: int = 1
    # "official": the split files the dataset ships; or a list format of public code:
    # "mma" (<frame_dir> <num_frames> <label>), "maedfer" (<frame_dir> <label>),
    # "hicmae" (<frame_dir> <wav> <label>), read from train_list / test_list.
    annotations: str = "official"
    train_list: Optional[str] = None
    test_list: Optional[str] = None
    # "frames": pre-extracted face-frame folders; "video": the mp4 clips; "packed": the store
    # `prepare --pack` writes under <data.root>/packed (JPEG frames and fbanks in ~1 GB shards).
    source: str = "frames"
    resolution: int = 160
    num_frames: int = 16
    audio_frames: int = 512
    mel_bins: int = 128
    sample_rate: int = 16000
    audio_policy: str = "error"  # a clip without audio: "error" or "silence"
    on_error: str = "raise"  # a bad clip: "raise" or "skip" (counted and reported)
    normalize: str = "none"  # "none" (authors: [0,1]) or "imagenet" mean/std
    augment: bool = True
    crop_area: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.5
    num_workers: int = 2
    cache_dir: Optional[str] = None
    # Crop/resize/flip/jitter training batches on the accelerator (needs cache_dir or source packed).
    gpu_augment: bool = False
    # Where packed JPEG frames of training batches are decoded: "loader" (the CPU workers) or
    # "device" (the batch at once on the accelerator, nvjpeg on CUDA; source packed, gpu_augment).
    decode: str = "loader"
    # data.dataset=manifest: the CSV (path,label[,fold|split][,group]; mma_dfer.datasets.manifest).
    manifest: Optional[str] = None
    # A manifest's class names in label order (None: its label names, sorted).
    class_names: Optional[tuple] = None
    # Generated folds (CREMA-D, RAVDESS, a manifest without folds): how many (None: the
    # registry's 5) and the seed that deals the speakers to them.
    num_folds: Optional[int] = None
    fold_seed: int = 0
    # RAVDESS: which vocal channel's audio-video clips: "speech", "song" or "both".
    vocal_channel: str = "speech"

    def validate(self) -> None:
        _choice("data.dataset", self.dataset, datasets.NAMES)
        _choice("data.annotations", self.annotations, ("official", "mma", "maedfer", "hicmae"))
        _choice("data.source", self.source, ("frames", "video", "packed"))
        _choice("data.decode", self.decode, ("loader", "device"))
        _choice("data.audio_policy", self.audio_policy, ("error", "silence"))
        _choice("data.on_error", self.on_error, ("raise", "skip"))
        _choice("data.normalize", self.normalize, ("none", "imagenet"))
        self._validate_dataset()
        if self.annotations != "official" and not (self.train_list and self.test_list):
            raise ConfigError(f"data.annotations={self.annotations!r} needs data.train_list and data.test_list")
        for name in ("resolution", "num_frames", "audio_frames", "mel_bins", "sample_rate"):
            _positive(f"data.{name}", getattr(self, name))
        if self.gpu_augment and not (self.cache_dir or self.source == "packed"):
            raise ConfigError("data.gpu_augment needs data.cache_dir or data.source=packed (batched crops need "
                              "frames of one size)")
        if self.source == "packed" and not self.root:
            raise ConfigError("data.source=packed needs data.root (the folder prepare --pack wrote, with packed/ in it)")
        if self.source == "packed" and self.cache_dir:
            raise ConfigError("data.cache_dir with data.source=packed: the packed store replaces the cache "
                              "(unset data.cache_dir)")
        if self.decode == "device" and not (self.source == "packed" and self.gpu_augment):
            raise ConfigError("data.decode=device decodes packed JPEG frames for data.gpu_augment: it needs "
                              "data.source=packed and data.gpu_augment=true")
        if len(self.crop_area) != 2 or len(self.crop_ratio) != 2:
            raise ConfigError("data.crop_area and data.crop_ratio are [low, high] pairs")

    def _validate_dataset(self) -> None:
        """The fields that depend on the dataset's registry entry (mma_dfer.datasets)."""
        info = datasets.get(self.dataset)
        _choice("data.vocal_channel", self.vocal_channel, ("speech", "song", "both"))
        if self.vocal_channel != "speech" and self.dataset != "ravdess":
            raise ConfigError(f"data.vocal_channel={self.vocal_channel!r} is RAVDESS's; data.dataset={self.dataset!r}")
        if (self.manifest is not None) != (self.dataset == "manifest"):
            raise ConfigError("data.manifest (a CSV) goes with data.dataset=manifest and only with it "
                              f"(data.dataset={self.dataset!r}, data.manifest={self.manifest!r})")
        if self.class_names is not None:
            if self.dataset != "manifest":
                raise ConfigError(f"data.class_names names a manifest's classes; {self.dataset!r} has its own "
                                  f"{list(info.classes)}")
            names = list(self.class_names)
            if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"data.class_names={names} must be two or more distinct names")
        if self.num_folds is not None:
            if info.splits == "official":
                raise ConfigError(f"data.num_folds: {info.title}'s folds are its official {info.folds}")
            if self.num_folds < 2:
                raise ConfigError(f"data.num_folds={self.num_folds} must be >= 2")
        if self.annotations != "official" and info.splits != "official":
            raise ConfigError(f"data.annotations={self.annotations!r} (a public code's list format) is for DFEW "
                              f"and MAFW; {info.title}'s folds are {info.splits}")
        if self.dataset == "manifest" and self.class_names is not None and not Path(self.manifest).is_file():
            return  # a run's config read where its manifest is not (predict): the folds are checked when read
        try:
            k = datasets.num_folds(self)
        except datasets.DatasetError as e:
            raise ConfigError(str(e)) from None
        if not 1 <= self.fold <= k:
            raise ConfigError(f"data.fold={self.fold} is not a fold of {info.title}'s {k}-fold protocol (1-{k})")


@dataclass
class TrainConfig:
    """Optimisation (paper section 4.2 and the authors' main.py)."""

    epochs: int = 25
    batch_size: int = 8  # global batch = micro-batch x grad-accumulation x world size
    micro_batch_size: Optional[int] = None  # None: batch_size / world size
    lr: float = 1e-4
    weight_decay: float = 1e-2
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "cosine"  # CosineAnnealingLR to 0 over `epochs`
    schedule_step: str = "epoch"  # authors step once per epoch; "iteration" as an option
    grad_clip: float = 0.0  # 0: off (authors: off)
    label_smoothing: float = 0.0
    seed: int = 1
    validate_every: int = 0  # epochs between evaluations on the test fold; 0: final only
    log_every: int = 10  # also how often the loss and the non-finite flag are read off the device
    max_steps_per_epoch: int = 0  # 0: the whole epoch; >0 truncates (smoke tests)
    # torch.compile the model for the training step (forward and backward through the frozen
    # blocks, drop-path and prompts inside the graph): a torch.compile mode ("default",
    # "reduce-overhead" = CUDA graphs, "max-autotune", ...), "eager" (no compilation), or "auto" =
    # "default" on a GPU and eager on the CPU (where compiling the ViT-Bs takes minutes).
    # Evaluation always runs eager.
    compile: str = "auto"
    compile_backend: str = "inductor"
    # seconds a collective (or the rendezvous) may wait for the other ranks before it fails: a
    # lost node then ends the run with exit code 76 (requeue) instead of a hang. DeepSpeed's default.
    collective_timeout_s: int = 600

    def validate(self) -> None:
        _positive("train.epochs", self.epochs)
        _positive("train.collective_timeout_s", self.collective_timeout_s)
        _positive("train.batch_size", self.batch_size)
        _choice("train.schedule", self.schedule, ("cosine", "constant"))
        _choice("train.schedule_step", self.schedule_step, ("epoch", "iteration"))
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr} must be > 0")
        _positive("train.log_every", self.log_every)
        _choice("train.compile", self.compile, ("auto", "eager") + COMPILE_MODES)
        if self.compile not in ("auto", "eager"):  # "auto" is checked where it resolves (no dynamo import here)
            self.check_compile_backend()

    def check_compile_backend(self) -> None:
        import torch._dynamo  # lazy: the config is read without torch (--help, aggregate, submit)

        _choice("train.compile_backend", self.compile_backend, tuple(torch._dynamo.list_backends(exclude_tags=())))


@dataclass
class EvalConfig:
    """Test protocol: the final epoch, 1-clip and the 2-clip average (paper Table 1, *)."""

    clips: tuple = (1, 2)
    batch_size: int = 8
    # result.json's intervals (mma_dfer.stats): coverage, bootstrap redraws of the test clips, their seed
    ci_level: float = stats.LEVEL
    ci_resamples: int = stats.RESAMPLES
    ci_seed: int = stats.SEED

    def validate(self) -> None:
        if not self.clips or any(c not in (1, 2) for c in self.clips):
            raise ConfigError(f"eval.clips={list(self.clips)} must be a non-empty subset of [1, 2]")
        if not 0 < self.ci_level < 1:
            raise ConfigError(f"eval.ci_level={self.ci_level} must lie between 0 and 1 (0.95: a 95% interval)")
        if self.ci_resamples < 100:
            raise ConfigError(f"eval.ci_resamples={self.ci_resamples} must be at least 100")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: Optional[str] = None  # None: runs/<dataset>/res<R>/fold<k>
    name: str = "mma_dfer"

    def validate(self) -> "Config":
        for section in (self.model, self.data, self.train, self.eval):
            section.validate()
        try:
            names = datasets.class_names(self.data)
        except datasets.DatasetError as e:
            raise ConfigError(str(e)) from None
        if self.data.dataset == "manifest":
            self.data.class_names = tuple(names)  # recorded in the run's config.yaml for predict and evaluate
        n = len(names)
        if self.model.num_classes is None:
            self.model.num_classes = n
        elif self.model.num_classes != n:
            raise ConfigError(f"model.num_classes={self.model.num_classes} but data.dataset="
                              f"{self.data.dataset!r} has {n} classes")
        return self

    @property
    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        return Path("runs") / self.data.dataset / f"res{self.data.resolution}" / f"fold{self.data.fold}"

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {list(allowed)}")


def _positive(name: str, value) -> None:
    if value <= 0:
        raise ConfigError(f"{name}={value} must be > 0")


def _divides(heads_name: str, heads: int, width_name: str, width: int) -> None:
    _positive(heads_name, heads)
    if width % heads:
        raise ConfigError(f"{heads_name}={heads} must divide {width_name}={width} (heads of equal width)")


# ---------------------------------------------------------------------------------------
# Loading and overriding
# ---------------------------------------------------------------------------------------

def _check_type(key: str, value, annotation):
    """Coerce ``value`` to the field's annotated type or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner[0])
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} expects true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} expects a string, got {value!r}")
        return value
    if annotation is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list, got {value!r}")
        return tuple(value)
    return value


def _apply(obj, values: dict, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if dotted in RETIRED:
            raise ConfigError(f"config key {dotted!r} was removed: {RETIRED[dotted]}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {dotted!r}{hint}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted} is a section; expected a mapping, got {value!r}")
            _apply(current, value, dotted + ".")
        else:
            setattr(obj, key, _check_type(dotted, value, hints[key]))


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} includes itself through 'base:'")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at top level")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_yaml(_base_path(path, base), seen + (path,))
    return _merge(merged, data)


def _base_path(path: Path, base) -> Path:
    """``base:`` of the YAML ``path``: a file next to it, else a shipped config's name (``base:
    demo`` in a user's own YAML anywhere), else the missing file (named by the error)."""
    beside = path.parent / str(base)
    if beside.is_file() or "/" in str(base):
        return beside
    try:
        return config_path(str(base))
    except ResourceError:
        return beside


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(item: str) -> dict:
    """``"train.epochs=2"`` -> ``{"train": {"epochs": 2}}`` (the value is parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def add_set_flag(p) -> None:
    """The ``--set KEY=VALUE`` flag of every command that reads a config (``args.overrides``,
    handed to :func:`load_config`): one definition, so that each command spells it the same."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set data.root=/data/DFEW (repeatable)")


def load_config(path: Optional[str | os.PathLike] = None, overrides: Optional[list] = None) -> Config:
    """Defaults, then the YAML file (and its bases), then ``key=value`` overrides; validated.
    ``path`` is a file, or the name of a shipped config (``dfew_160``: :mod:`mma_dfer.resources`)."""
    cfg = Config()
    try:
        merged: dict = _read_yaml(config_path(path)) if path else {}
    except ResourceError as e:
        raise ConfigError(str(e)) from None
    for item in overrides or []:
        merged = _merge(merged, parse_override(item))
    _apply(cfg, merged, "")
    return cfg.validate()


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the fully resolved config (what the run actually used) as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
