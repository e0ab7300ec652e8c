"""Frozen-encoder feature cache: every frame encoded once, stored as a memory-mapped .npy.

The cache key hashes the seqvpr version (preprocessing and encoder code), the
encoder's config and weights, the frame files (name, size, mtime) and, for an
augmented copy, the augmentation and its copy number and seed, so a changed
image, encoder, augmentation or release never reuses stale features.
Files are written under a temporary name and renamed, so a killed run leaves
no half-written cache behind; later runs (and every DDP rank) map it read-only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..atomic import atomic_path
from ..data import Traversal
from ..models import SequenceModel
from .augment import augment_frame, frame_rng
from .config import AugmentConfig

LOG = logging.getLogger(__name__)


def encoder_key(model: SequenceModel) -> str:
    h = hashlib.sha256(__version__.encode())
    h.update(json.dumps(model.config["encoder"], sort_keys=True, default=str).encode())
    for key, tensor in sorted(model.encoder.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def frames_key(traversal: Traversal) -> str:
    h = hashlib.sha256()
    for p in traversal.paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


Augmented = tuple[AugmentConfig, int, int]  # (augmentation, copy number, seed)


def cache_path(cache_dir: Path, model: SequenceModel, traversal: Traversal,
               augment: Augmented | None = None) -> Path:
    key = encoder_key(model) + frames_key(traversal)
    if augment is not None:
        cfg, copy, seed = augment
        key += json.dumps([dataclasses.asdict(cfg), copy, seed], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in traversal.name)
    suffix = "" if augment is None else f"-aug{augment[1]}"
    return Path(cache_dir) / f"{safe}{suffix}-{digest[:16]}.npy"


def cached_features(model: SequenceModel, traversal: Traversal, cache_dir: str | os.PathLike,
                    batch_size: int = 64, progress: bool = True, build: bool = True,
                    augment: Augmented | None = None) -> np.ndarray:
    """float32 [N, *encoder.out_shape] encoder outputs of every frame, memory-mapped read-only.

    ``build=False`` only opens an existing cache (DDP ranks other than 0 wait
    for rank 0 to build it). ``augment``: encode the frames' augmented copy
    number ``copy`` instead (:func:`~seqvpr_core.train.augment.augment_frame`).
    """
    path = cache_path(Path(cache_dir), model, traversal, augment)
    if not path.is_file():
        if not build:
            raise FileNotFoundError(f"feature cache {path} was not built")
        _build(path, model, traversal, batch_size, progress, augment)
    try:
        feats = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise ValueError(f"feature cache {path} is damaged ({exc}); delete it to rebuild") \
            from None
    if feats.shape != (len(traversal), *model.encoder.out_shape):
        raise ValueError(f"feature cache {path} has shape {feats.shape}, expected "
                         f"{(len(traversal), *model.encoder.out_shape)}; delete it to rebuild")
    return feats


def _build(path: Path, model: SequenceModel, traversal: Traversal, batch_size: int,
           progress: bool, augment: Augmented | None = None) -> None:
    desc = f"cache {traversal.name}" + ("" if augment is None else f" (augmented {augment[1]})")
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(len(traversal), *model.encoder.out_shape))
        model.eval()
        with tqdm(total=len(traversal), desc=desc, unit="frame", disable=not progress) as bar:
            for start, frames in traversal.batches(batch_size):
                if augment is not None:
                    cfg, copy, seed = augment
                    frames = [augment_frame(f, cfg, frame_rng(seed, copy, start + i))
                              for i, f in enumerate(frames)]
                feats = model.encode_backbone_frames(frames).float().cpu().numpy()
                out[start:start + len(frames)] = feats
                bar.update(len(frames))
        out.flush()
        del out
    LOG.info("cached %d frame features of %s in %s", len(traversal), traversal.name, path)
