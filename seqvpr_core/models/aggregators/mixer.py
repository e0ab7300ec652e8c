"""MLP-Mixer over the L x D matrix of a window's frame descriptors.

The sequence aggregator of the DINOv2-based seq-VPR thesis, built like MixVPR
(Ali-bey et al., "MixVPR: Feature Mixing for Visual Place Recognition", WACV
2023) with frames in place of feature-map rows: N residual mixer layers
(LayerNorm -> linear -> ReLU -> linear) mix each frame's descriptor
holistically, then two linear projections map the feature axis D -> N_out and
the frame axis L -> M, giving an M x N_out = 4096-d descriptor. The frame-axis
projection fixes the window length.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Aggregator, l2n
from ..registry import register_aggregator


class MixerLayer(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(dim * mlp_ratio))
        self.mix = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x)


class SeqMixer(Aggregator):
    """[B, L, D] -> mixers over D -> project D -> cols, L -> rows -> [B, rows*cols]."""

    def __init__(self, length: int, in_dim: int, depth: int = 4, mlp_ratio: float = 1.0,
                 out_rows: int = 4, out_cols: int | None = None) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"mixer needs a window length >= 1, got {length}")
        self.length = int(length)
        self.mixers = nn.Sequential(*(MixerLayer(in_dim, mlp_ratio) for _ in range(depth)))
        self.col_proj = nn.Linear(in_dim, out_cols or 4096 // out_rows)
        self.row_proj = nn.Linear(self.length, out_rows)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def out_dim(self, in_dim: int) -> int:
        return self.row_proj.out_features * self.col_proj.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        x = self.col_proj(self.mixers(x))  # [B, L, cols]
        x = self.row_proj(x.transpose(1, 2))  # [B, cols, rows]
        return l2n(x.flatten(1))


@register_aggregator()
def mixer(length: int, in_dim: int, depth: int = 4, mlp_ratio: float = 1.0, out_rows: int = 4,
          out_cols: int | None = None) -> SeqMixer:
    """Seq-Mixer: 4 mixer layers, 4 x 1024 = 4096-d output by default."""
    return SeqMixer(length, in_dim, depth, mlp_ratio, out_rows, out_cols)
