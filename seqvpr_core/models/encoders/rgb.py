"""Preprocessed RGB frames as they are: the per-frame half of a video network.

Early-fusion aggregators such as ``r2plus1d`` convolve pixels of neighbouring
frames together from their first layer, so nothing per frame can be computed
once and cached except the resize and normalisation. This encoder does exactly
that and hands the frame on as a grid of 3-d pixel tokens [H*W, 3], so the
ring, the window and the aggregator contract stay those of every other model.
The defaults are those of torchvision's Kinetics-400 video models
(``R2Plus1D_18_Weights``): 112x112 frames, Kinetics mean and std.
"""

from __future__ import annotations

import torch

from ..base import FrameEncoder, Preprocess
from ..registry import register_encoder

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class RGBEncoder(FrameEncoder):
    """[B, 3, H, W] -> [B, H*W, 3] (row-major pixels); no parameters."""

    def __init__(self, image_size: tuple[int, int] = (112, 112),
                 mean: tuple[float, float, float] = KINETICS_MEAN,
                 std: tuple[float, float, float] = KINETICS_STD) -> None:
        super().__init__()
        h, w = image_size
        self.dim, self.grid = 3, (h, w)
        self.preprocess = Preprocess((h, w), tuple(mean), tuple(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


@register_encoder()
def rgb(pretrained: bool = False, image_size: tuple[int, int] = (112, 112),
        mean: tuple[float, float, float] = KINETICS_MEAN,
        std: tuple[float, float, float] = KINETICS_STD) -> RGBEncoder:
    """Normalised pixels for video aggregators; no weights, so ``pretrained`` is moot."""
    return RGBEncoder(tuple(image_size), mean, std)
