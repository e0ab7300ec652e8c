"""Typed training configuration, loaded from YAML with every unknown key refused.

One file describes a run: model, data (reader + splits), windows, ground truth,
mining, optimiser, JIST branch. ``seqvpr train --config FILE`` reads it; the
defaults are the SeqVLAD/JIST protocol (margin 0.1, 1 positive, 5 hardest of
1000 cached negatives refreshed every 1000 queries, Adam).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import GT_RULES
from ..inputs import InputError, expect, read_config_file, type_name
from ..limits import (
    BATCH,
    COUNT,
    DEGREES,
    MAX_THREADS,
    METRES,
    NON_NEGATIVE,
    NON_NEGATIVE_COUNT,
    POSITIVE,
    STRIDE,
    WINDOW_LENGTH,
    Limit,
)


@dataclass
class DataConfig:
    reader: str
    root: str
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"


@dataclass
class WindowSpec:
    length: int = 5
    stride: int = 1
    spacing_m: float = 0.0  # > 0: frames spaced by travelled distance (needs positions)


@dataclass
class GroundTruthSpec:
    """Positives within ``pos_*``; anything within ``eval_*`` is never a negative
    (soft negatives), and validation scores with ``eval_*``."""

    pos_tolerance: int | None = None
    pos_radius: float | None = None
    eval_tolerance: int | None = None
    eval_radius: float | None = None
    max_heading_deg: float | None = None  # nuScenes: positives also within this heading
    # which frames the criterion compares (seqvpr_core.eval.RULES): "current" = the
    # windows' last frames, what a robot localising now needs; "seq2seq" = any frame
    # of one near any frame of the other (the seeds). Overlapping windows are never
    # negatives under either rule.
    rule: str = "seq2seq"


@dataclass
class MiningConfig:
    margin: float = 0.1
    negatives: int = 5  # hardest negatives per query
    pool: int = 1000  # random negatives cached per refresh
    refresh: int = 1000  # queries (triplet tuples) between cache refreshes


@dataclass
class JistConfig:
    """CosPlace-style classes for the single-image branch (JIST)."""

    enabled: bool = False
    cell_m: float = 10.0
    heading_deg: float = 30.0  # 12 heading classes
    groups_n: int = 5  # cells of a group are groups_n cells apart (non-adjacent)
    groups_l: int = 2  # heading classes of a group are groups_l classes apart
    min_images_per_class: int = 1
    images_per_step: int = 32
    lambda_seq: float = 10000.0
    lambda_img: float = 100.0
    scale: float = 30.0  # CosFace s
    margin: float = 0.4  # CosFace m
    lr: float = 0.01  # classifier lr (CosPlace)


@dataclass
class AugmentConfig:
    """Photometric and geometric augmentation of training frames, as CosPlace (and the
    JIST image branch built on it) trains: colour jitter and a random resized crop.
    With a frozen encoder, ``copies`` augmented versions of every training frame are
    encoded once into the feature cache and training windows draw one per frame; with
    an encoder that trains, any ``copies`` > 0 augments the frames as they are read."""

    copies: int = 0  # 0: no augmentation
    brightness: float = 0.7  # CosPlace defaults (gmberton/CosPlace parser.py)
    contrast: float = 0.7
    saturation: float = 0.7
    hue: float = 0.5
    crop_scale: float = 0.5  # the crop keeps a random (1 - crop_scale .. 1) of the area
    keep_clean: float = 0.25  # share of training frames left unaugmented


@dataclass
class OptimConfig:
    epochs: int = 20
    batch_size: int = 4  # queries per step
    lr: float = 1e-4  # aggregator (and any head)
    encoder_lr: float = 1e-5  # encoder layers left trainable by the model config
    weight_decay: float = 0.0
    scheduler: str = "none"  # none | step | cosine
    step_size: int = 10
    gamma: float = 0.5
    patience: int = 3  # epochs without a better validation Recall@monitor
    monitor: int = 5  # K of the validation Recall@K that picks best.pt and stops early
    amp: bool = True  # CUDA only
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    model: dict[str, Any]
    data: DataConfig
    output: str
    window: WindowSpec = field(default_factory=WindowSpec)
    ground_truth: GroundTruthSpec = field(default_factory=GroundTruthSpec)
    mining: MiningConfig = field(default_factory=MiningConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    jist: JistConfig = field(default_factory=JistConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    frozen_encoder: bool = False  # cache frame features once; train the aggregator only
    head_init: str = "random"  # random | identity (start as no head) | pca (training frames)
    feature_cache: str | None = None  # default: <output>/features
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch intra-op threads per process; 0: torch's default
    batch_size_encode: int = 64
    val_windows_stride: int = 1

    @property
    def output_dir(self) -> Path:
        return Path(self.output)

    @property
    def cache_dir(self) -> Path:
        return Path(self.feature_cache) if self.feature_cache else self.output_dir / "features"


_LIMITS: dict[str, Limit] = {
    "window.length": WINDOW_LENGTH, "window.stride": STRIDE, "window.spacing_m": METRES,
    "ground_truth.pos_tolerance": NON_NEGATIVE_COUNT, "ground_truth.pos_radius": METRES,
    "ground_truth.eval_tolerance": NON_NEGATIVE_COUNT, "ground_truth.eval_radius": METRES,
    "ground_truth.max_heading_deg": DEGREES,
    "mining.margin": NON_NEGATIVE, "mining.negatives": COUNT, "mining.pool": COUNT,
    "mining.refresh": COUNT,
    "optim.epochs": COUNT, "optim.batch_size": COUNT, "optim.lr": POSITIVE,
    "optim.encoder_lr": NON_NEGATIVE, "optim.weight_decay": NON_NEGATIVE,
    "optim.step_size": COUNT, "optim.gamma": POSITIVE, "optim.patience": COUNT,
    "optim.grad_clip": NON_NEGATIVE,
    "jist.cell_m": POSITIVE, "jist.heading_deg": Limit(low=0, high=360, low_open=True),
    "jist.groups_n": COUNT, "jist.groups_l": COUNT, "jist.min_images_per_class": COUNT,
    "jist.images_per_step": COUNT, "jist.lambda_seq": NON_NEGATIVE,
    "jist.lambda_img": NON_NEGATIVE, "jist.scale": POSITIVE, "jist.margin": NON_NEGATIVE,
    "jist.lr": POSITIVE,
    "seed": NON_NEGATIVE_COUNT, "threads": Limit(integer=True, low=0, high=MAX_THREADS),
    "batch_size_encode": BATCH, "val_windows_stride": STRIDE,
    "augment.copies": NON_NEGATIVE_COUNT, "augment.brightness": NON_NEGATIVE,
    "augment.contrast": NON_NEGATIVE, "augment.saturation": NON_NEGATIVE,
    "augment.hue": Limit(low=0, high=0.5), "augment.crop_scale": Limit(low=0, high=1),
    "augment.keep_clean": Limit(low=0, high=1),
}
_CHOICES = {"optim.scheduler": ("none", "step", "cosine"), "device": ("auto", "cpu", "cuda"),
            "ground_truth.rule": GT_RULES, "head_init": ("random", "identity", "pca")}


def _build(cls, values: Any, where: str, path: str = ""):
    """``cls`` from a mapping: unknown keys refused, every value of its annotated type
    and in its range; messages say ``<file>: <key> must be ...``."""
    if not isinstance(values, dict):
        raise InputError(f"{where}{path or 'config'} must be a mapping of keys to values, "
                         f"got {type_name(values)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        raise InputError(f"{where}unknown keys {unknown} in {path or 'the config'}; known: "
                         f"{sorted(fields)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InputError(f"{where}{path or 'the config'} lacks keys {missing}")
    kwargs = {}
    for name, value in values.items():
        key = f"{path}.{name}" if path else name
        sub = _NESTED.get((cls, name))
        if sub:
            kwargs[name] = _build(sub, value, where, key)
            continue
        _check_type(value, hints[name], f"{where}{key}")
        if value is not None and key in _LIMITS:
            _LIMITS[key].check(f"{where}{key}", value)
        if key in _CHOICES and value not in _CHOICES[key]:
            raise InputError(f"{where}{key} must be one of {_CHOICES[key]}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, where: str) -> None:
    """``value`` against a field annotation (int, float, bool, str, dict, X | None)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    wanted = tuple(typing.get_origin(t) or t for t in options)
    wanted = tuple(object if t is Any else t for t in wanted)
    if object not in wanted:
        expect(value, where, wanted)


_NESTED = {(TrainConfig, "data"): DataConfig, (TrainConfig, "window"): WindowSpec,
           (TrainConfig, "ground_truth"): GroundTruthSpec, (TrainConfig, "mining"): MiningConfig,
           (TrainConfig, "optim"): OptimConfig, (TrainConfig, "jist"): JistConfig,
           (TrainConfig, "augment"): AugmentConfig}


def config_from_dict(values: dict[str, Any], base_dir: str | os.PathLike = ".",
                     source: str | None = None) -> TrainConfig:
    """Build and check a config; relative data/output paths resolve against ``base_dir``
    (the YAML file's folder) so a config works from any working directory. ``source``
    (the file) starts every error message."""
    where = f"{source}: " if source else ""
    cfg = _build(TrainConfig, values, where)
    from ..data.pairs import check_options, known_datasets

    if cfg.data.reader not in known_datasets():
        raise InputError(f"{where}data.reader must be one of {known_datasets()}, got "
                         f"{cfg.data.reader!r}")
    try:
        check_options(cfg.data.reader, cfg.data.options)
    except ValueError as exc:
        raise InputError(f"{where}data.options: {exc}") from None
    base = Path(base_dir)
    cfg.data.root = str((base / Path(cfg.data.root).expanduser()).resolve())
    cfg.output = str((base / Path(cfg.output).expanduser()).resolve())
    if cfg.feature_cache:
        cfg.feature_cache = str((base / cfg.feature_cache).resolve())
    gt = cfg.ground_truth
    if (gt.pos_tolerance is None) == (gt.pos_radius is None):
        raise InputError(f"{where}ground_truth needs exactly one of pos_tolerance or "
                         "pos_radius")
    if (gt.eval_tolerance is None) == (gt.eval_radius is None):
        raise InputError(f"{where}ground_truth needs exactly one of eval_tolerance or "
                         "eval_radius")
    if cfg.mining.pool < cfg.mining.negatives:
        raise InputError(f"{where}mining needs negatives <= pool, got {cfg.mining.negatives} "
                         f"> {cfg.mining.pool}")
    from ..eval import RECALL_VALUES

    if cfg.optim.monitor not in RECALL_VALUES:
        raise InputError(f"{where}optim.monitor must be one of {list(RECALL_VALUES)} (the K "
                         f"of a validation Recall@K), got {cfg.optim.monitor!r}")
    return cfg


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A training config file (YAML or JSON); errors name the file and the key."""
    path = Path(path)
    values = read_config_file(path, "training config")
    return config_from_dict({} if values is None else values, path.parent, source=str(path))
