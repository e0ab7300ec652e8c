"""The learning-free SeqSLAM frame descriptor: downsampled, locally normalised grayscale.

Milford & Wyeth, "SeqSLAM: Visual route-based navigation for sunny summer days
and stormy winter nights", ICRA 2012: block-mean downsampling, then patch
normalisation (zero mean, unit variance in each 8 x 8 patch, as OpenSeqSLAM).
Dividing by each patch's spread lifts the noise of flat patches (snow, sky,
tunnel walls) to full contrast; on Nordland winter against summer that costs
more than it gains. The default keeps the invariance to brightness and contrast
without it: the mean of the 3 x 3 neighbourhood is subtracted from every pixel
(a high-pass; the L2 norm then removes the contrast). Chosen on Nordland frames
1-1600 by ``benchmarks/pixels_defaults.py`` (16 x 32, bilinear resize, kernel 3:
Recall@1 0.93 on frames 1601-2400 at L = 10 against 0.78 for the textbook 16 x 32
block means with each image standardised); the textbook variants stay
available (``normalise: patch | image | none``, ``resize: area`` for block means).
Inner products of the L2-normalised result rank frames like SeqSLAM's sum of
absolute differences.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..base import FrameEncoder, Preprocess, l2n
from ..registry import register_encoder

# ITU-R BT.601 luma, applied after Preprocess maps RGB to [-1, 1].
LUMA = (0.299, 0.587, 0.114)
STD_EPS = 1e-3  # patch/image standardisation: flat regions (tunnels) stay ~0


def _local_mean(gray: torch.Tensor, enc: PixelsEncoder) -> torch.Tensor:
    k = enc.kernel
    mean = F.avg_pool2d(gray, k, stride=1, padding=k // 2, count_include_pad=False)
    return gray - mean


def _patch(gray: torch.Tensor, enc: PixelsEncoder) -> torch.Tensor:
    p = enc.patch
    patches = F.unfold(gray, kernel_size=p, stride=p)  # [B, p*p, n_patches]
    mean = patches.mean(1, keepdim=True)
    std = patches.std(1, keepdim=True, unbiased=False)
    normed = (patches - mean) / (std + STD_EPS)
    return F.fold(normed, output_size=gray.shape[-2:], kernel_size=p, stride=p)


def _image(gray: torch.Tensor, enc: PixelsEncoder) -> torch.Tensor:
    flat = gray.flatten(1)
    std = flat.std(1, keepdim=True, unbiased=False)
    return ((flat - flat.mean(1, keepdim=True)) / (std + STD_EPS)).view_as(gray)


NORMALISATIONS: dict[str, Callable[[torch.Tensor, PixelsEncoder], torch.Tensor]] = {
    "local_mean": _local_mean,  # subtract the kernel x kernel mean around each pixel
    "patch": _patch,  # SeqSLAM: standardise each non-overlapping patch x patch block
    "image": _image,  # standardise the whole image
    "none": lambda gray, enc: gray,
}
RESIZES = ("area", "bilinear")


class PixelsEncoder(FrameEncoder):
    """[B, 3, H, W] -> [B, H*W] normalised grayscale, L2-normalised."""

    def __init__(self, image_size: tuple[int, int] = (16, 32), normalise: str = "local_mean",
                 kernel: int = 3, patch: int = 8, resize: str = "bilinear") -> None:
        super().__init__()
        h, w = image_size
        if normalise not in NORMALISATIONS:
            raise ValueError(f"unknown pixels normalise {normalise!r}; known: "
                             f"{sorted(NORMALISATIONS)}")
        if resize not in RESIZES:
            raise ValueError(f"pixels resize must be one of {RESIZES}, got {resize!r}")
        if normalise == "patch" and (h % patch or w % patch):
            raise ValueError(f"image_size {image_size} must be a multiple of patch={patch}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"pixels kernel must be odd and >= 1, got {kernel}")
        self.normalise, self.kernel, self.patch = normalise, kernel, patch
        self.dim = h * w
        self.preprocess = Preprocess((h, w), resize=resize)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = (x * self.luma.to(x.dtype)).sum(1, keepdim=True)  # [B, 1, H, W]
        return l2n(NORMALISATIONS[self.normalise](gray, self).flatten(1))


@register_encoder()
def pixels(pretrained: bool = False, **kwargs) -> PixelsEncoder:
    """SeqSLAM-style locally normalised pixels; there are no weights, so ``pretrained``
    is moot."""
    return PixelsEncoder(**kwargs)
