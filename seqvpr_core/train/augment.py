"""Training-frame augmentation: colour jitter and a random resized crop, as CosPlace
trains (and the JIST image branch built on it), drawn from a seeded generator so a
frame's k-th augmented copy is the same in every run, rank and resumed epoch.

A crop keeps a random share of the frame's area (``1 - crop_scale`` to all of it)
at an aspect ratio within 3/4..4/3 of the frame's, and is resized back to the
frame's size: the place moves and zooms a little in the view, as it does between
two drives. Grayscale frames (R = G = B) are unchanged by saturation and hue.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .config import AugmentConfig


def augment_frame(frame: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
                  ) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> an augmented uint8 RGB frame of the same size."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)  # [3, H, W]
    h, w = x.shape[-2:]
    if cfg.crop_scale > 0:
        top, left, ch, cw = _crop_box(h, w, cfg.crop_scale, rng)
        x = TF.resized_crop(x, top, left, ch, cw, [h, w], antialias=True)
    for fn, strength in ((TF.adjust_brightness, cfg.brightness),
                         (TF.adjust_contrast, cfg.contrast),
                         (TF.adjust_saturation, cfg.saturation)):
        if strength > 0:
            x = fn(x, float(rng.uniform(max(0.0, 1 - strength), 1 + strength)))
    if cfg.hue > 0:
        x = TF.adjust_hue(x, float(rng.uniform(-cfg.hue, cfg.hue)))
    return x.permute(1, 2, 0).contiguous().numpy()


def _crop_box(h: int, w: int, scale: float, rng: np.random.Generator
              ) -> tuple[int, int, int, int]:
    area = rng.uniform(1.0 - scale, 1.0) * h * w
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3))) * w / h
    cw = int(round(min(w, math.sqrt(area * ratio))))
    ch = int(round(min(h, math.sqrt(area / ratio))))
    ch, cw = max(1, ch), max(1, cw)
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def frame_rng(seed: int, copy: int, index: int) -> np.random.Generator:
    """The generator of one frame's ``copy``-th augmentation."""
    return np.random.default_rng([seed, copy, index, 11])
