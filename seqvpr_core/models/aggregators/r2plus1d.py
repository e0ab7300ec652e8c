"""R(2+1)D-18 over the window's frames: a video CNN as an early-fusion aggregator.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action
Recognition", CVPR 2018. Every 3-D convolution is factorised into a spatial
(1 x k x k) and a temporal (k x 1 x 1) one; the network sees the pixels of the
whole window as one clip [B, 3, T, H, W]. The modules are torchvision's own
(``torchvision.models.video.r2plus1d_18``: ``stem``, ``layer1``..``layer4``),
so a state_dict of it (e.g. Kinetics-400) loads from a local file
(``weights``); its classifier ``fc`` is not used: the descriptor is the global
average of the last feature map (512-d), L2-normalised. ``layers`` < 4 cuts the
network after that stage, as VPR does with image CNNs (64/128/256-d).

Time is convolved with padding and strided (stages 2-4) like space, then
averaged, so any window length T >= 1 works and frame order matters. The frame
encoder (``rgb``) only resizes and normalises: the network re-runs over all
frames of every window, the price of early fusion.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

from ..base import Aggregator, l2n
from ..registry import register_aggregator
from ..weights import load_exact, read_state_dict

FORMATS = "a torchvision R(2+1)D-18 state_dict (torchvision.models.video.r2plus1d_18 layout)"
WIDTHS = (64, 128, 256, 512)  # channels after layer1..layer4


class R2Plus1D(Aggregator):
    """[B, T, H*W, 3] pixels -> [B, WIDTHS[layers - 1]]."""

    input_kind = "tokens"
    fusion = "early"

    def __init__(self, grid: tuple[int, int], layers: int = 4) -> None:
        super().__init__()
        if not 1 <= layers <= len(WIDTHS):
            raise ValueError(f"layers must be 1..{len(WIDTHS)}, got {layers}")
        net = torchvision.models.video.r2plus1d_18(weights=None)
        self.grid, self.layers = tuple(grid), layers
        self.stem = net.stem
        for i in range(1, layers + 1):
            setattr(self, f"layer{i}", getattr(net, f"layer{i}"))

    def out_dim(self, in_dim: int) -> int:
        return WIDTHS[self.layers - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        b, t = x.shape[:2]
        clip = x.view(b, t, *self.grid, 3).permute(0, 4, 1, 2, 3)  # [B, 3, T, H, W]
        y = self.stem(clip)
        for i in range(1, self.layers + 1):
            y = getattr(self, f"layer{i}")(y)
        return l2n(y.mean((2, 3, 4)))  # torchvision's AdaptiveAvgPool3d(1)

    def load_weights(self, path: str | os.PathLike) -> None:
        """torchvision's file: ``fc.*`` and stages past ``layers`` are not used."""
        state = read_state_dict(path, "r2plus1d", FORMATS)
        kept = ("stem.", *(f"layer{i}." for i in range(1, self.layers + 1)))
        load_exact(self, state, path, {k for k in state if not k.startswith(kept)})


@register_aggregator()
def r2plus1d(in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0, layers: int = 4,
             pretrained: bool = False, weights: str | None = None) -> R2Plus1D:
    """R(2+1)D-18 on the window's RGB frames (encoder ``rgb``); ``weights``: its
    torchvision state_dict."""
    if in_dim != 3 or prefix_tokens:
        raise ValueError(f"r2plus1d runs on the RGB pixels of the frames, but the encoder gives "
                         f"{in_dim}-d tokens; use the encoder 'rgb'")
    if pretrained and (weights is None or not Path(weights).expanduser().is_file()):
        missing = "no weights= file given" if weights is None else f"{weights} not found"
        raise FileNotFoundError(f"aggregator 'r2plus1d': {missing} (expected {FORMATS}); "
                                "pretrained=False for random init")
    agg = R2Plus1D(grid, layers)
    if pretrained:
        agg.load_weights(weights)
    return agg
