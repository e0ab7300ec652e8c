"""Global descriptors of a CNN feature map [B, C, H, W] -> [B, D], learned ones.

The single-image VPR heads that seq-VPR builds on, as ``pool=`` options of the
CNN encoders (:mod:`.cnn`; ``gem`` lives there, ``none`` gives the map as tokens):

- ``netvlad``: NetVLAD over the H*W positions (Arandjelović et al., CVPR 2016;
  Nanne/pytorch-NetVlad's ``pool`` layer, whose ``vladv1``/``vladv2`` inits it has).
- ``mixvpr``: MixVPR (Ali-bey et al., WACV 2023): residual MLP mixers across the
  flattened H*W map of each channel, then projections C -> out_channels and
  H*W -> out_rows, flattened channel-major and L2-normalised. Its row projection
  fixes the grid, so the encoder's image size must give the grid it was trained on.
"""

from __future__ import annotations

import torch
from torch import nn

from ..aggregators.mixer import MixerLayer
from ..aggregators.netvlad import NetVLAD
from ..base import l2n


class NetVLADPool(nn.Module):
    """[B, C, H, W] -> NetVLAD of the H*W local descriptors, [B, clusters*C]."""

    def __init__(self, channels: int, grid: tuple[int, int], clusters: int = 64,
                 init: str = "vladv1") -> None:
        super().__init__()
        self.vlad = NetVLAD(channels, clusters, init)
        self.dim = clusters * channels

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.vlad(f.flatten(2).transpose(1, 2))


class MixVPRPool(nn.Module):
    """[B, C, H, W] -> MixVPR descriptor [B, out_channels*out_rows] (L2-normalised)."""

    def __init__(self, channels: int, grid: tuple[int, int], out_channels: int = 1024,
                 mix_depth: int = 4, mlp_ratio: float = 1.0, out_rows: int = 4,
                 row_bias: bool = True) -> None:
        super().__init__()
        hw = grid[0] * grid[1]
        self.mix = nn.Sequential(*(MixerLayer(hw, mlp_ratio) for _ in range(mix_depth)))
        self.channel_proj = nn.Linear(channels, out_channels)
        self.row_proj = nn.Linear(hw, out_rows, bias=row_bias)
        self.dim = out_channels * out_rows

    def mixed(self, f: torch.Tensor) -> torch.Tensor:
        """The feature mixers' output [B, C, H*W]."""
        return self.mix(f.flatten(2))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.channel_proj(self.mixed(f).transpose(1, 2)).transpose(1, 2)  # [B, out_c, HW]
        return l2n(self.row_proj(x).flatten(1))


# pool name -> head(channels, grid, **pool_options)
MAP_POOLS = {"netvlad": NetVLADPool, "mixvpr": MixVPRPool}
