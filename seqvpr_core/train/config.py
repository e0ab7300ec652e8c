"""Typed training configuration, loaded from YAML with every unknown key refused.

One file describes a run: model, data (reader + splits), windows, ground truth,
mining, optimiser, JIST branch. ``seqvpr train --config FILE`` reads it; the
defaults are the SeqVLAD/JIST protocol (margin 0.1, 1 positive, 5 hardest of
1000 cached negatives refreshed every 1000 queries, Adam).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


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
class OptimConfig:
    epochs: int = 20
    batch_size: int = 4  # queries per step
    lr: float = 1e-4  # aggregator (and any head)
    encoder_lr: float = 1e-5  # encoder layers left trainable by the model config
    weight_decay: float = 0.0
    scheduler: str = "none"  # none | step | cosine
    step_size: int = 10
    gamma: float = 0.5
    patience: int = 3  # epochs without a better validation Recall@5
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
    frozen_encoder: bool = False  # cache frame features once; train the aggregator only
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


def _build(cls, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in {where}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        sub = _NESTED.get((cls, name))
        kwargs[name] = _build(sub, value, f"{where}.{name}") if sub else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


_NESTED = {(TrainConfig, "data"): DataConfig, (TrainConfig, "window"): WindowSpec,
           (TrainConfig, "ground_truth"): GroundTruthSpec, (TrainConfig, "mining"): MiningConfig,
           (TrainConfig, "optim"): OptimConfig, (TrainConfig, "jist"): JistConfig}


def config_from_dict(values: dict[str, Any], base_dir: str | os.PathLike = ".") -> TrainConfig:
    """Build and check a config; relative data/output paths resolve against ``base_dir``
    (the YAML file's folder) so a config works from any working directory."""
    cfg = _build(TrainConfig, values, "config")
    base = Path(base_dir)
    cfg.data.root = str((base / Path(cfg.data.root).expanduser()).resolve())
    cfg.output = str((base / Path(cfg.output).expanduser()).resolve())
    if cfg.feature_cache:
        cfg.feature_cache = str((base / cfg.feature_cache).resolve())
    gt = cfg.ground_truth
    if (gt.pos_tolerance is None) == (gt.pos_radius is None):
        raise ValueError("ground_truth needs exactly one of pos_tolerance or pos_radius")
    if (gt.eval_tolerance is None) == (gt.eval_radius is None):
        raise ValueError("ground_truth needs exactly one of eval_tolerance or eval_radius")
    if cfg.optim.scheduler not in ("none", "step", "cosine"):
        raise ValueError(f"optim.scheduler must be none, step or cosine, got "
                         f"{cfg.optim.scheduler!r}")
    if cfg.mining.negatives < 1 or cfg.mining.pool < cfg.mining.negatives:
        raise ValueError("mining needs 1 <= negatives <= pool")
    return cfg


def load_config(path: str | os.PathLike) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    values = yaml.safe_load(path.read_text())
    return config_from_dict(values or {}, path.parent)
