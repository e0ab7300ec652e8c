"""The learning-free SeqSLAM frame descriptor: downsampled, patch-normalised grayscale.

Milford & Wyeth, "SeqSLAM: Visual route-based navigation for sunny summer days
and stormy winter nights", ICRA 2012. Patch normalisation (zero mean, unit
variance in each non-overlapping patch) removes most of the global
illumination change between seasons; inner products of the L2-normalised
result rank frames like SeqSLAM's sum of absolute differences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..base import FrameEncoder, Preprocess, l2n
from ..registry import register_encoder

# ITU-R BT.601 luma, applied after Preprocess maps RGB to [-1, 1].
LUMA = (0.299, 0.587, 0.114)


class PixelsEncoder(FrameEncoder):
    """[B, 3, H, W] -> [B, H*W] patch-normalised grayscale, L2-normalised."""

    def __init__(self, image_size: tuple[int, int] = (16, 32), patch: int = 8) -> None:
        super().__init__()
        h, w = image_size
        if h % patch or w % patch:
            raise ValueError(f"image_size {image_size} must be a multiple of patch={patch}")
        self.patch = patch
        self.dim = h * w
        self.preprocess = Preprocess((h, w))
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = (x * self.luma.to(x.dtype)).sum(1, keepdim=True)  # [B, 1, H, W]
        b, _, h, w = gray.shape
        p = self.patch
        patches = F.unfold(gray, kernel_size=p, stride=p)  # [B, p*p, n_patches]
        mean = patches.mean(1, keepdim=True)
        std = patches.std(1, keepdim=True, unbiased=False)
        normed = (patches - mean) / (std + 1e-3)  # flat patches (tunnels) stay ~0
        img = F.fold(normed, output_size=(h, w), kernel_size=p, stride=p)
        return l2n(img.flatten(1))


@register_encoder()
def pixels(pretrained: bool = False, **kwargs) -> PixelsEncoder:
    """SeqSLAM-style patch-normalised pixels; there are no weights, so ``pretrained`` is moot."""
    return PixelsEncoder(**kwargs)
