"""Learned fusion of a fixed-length window of frame vectors: ``fc`` and ``seqnet``.

- ``fc`` (intermediate fusion, the learned baseline of Mereu et al., SeqVLAD,
  RA-L 2022): flatten the L x D matrix and project it with one linear layer.
- ``seqnet``: Garg & Milford, "SeqNet: Learning Descriptors for Sequence-Based
  Hierarchical Place Recognition", RA-L 2021: a 1-D temporal convolution of
  width w over the frame descriptors, averaged over the remaining time steps,
  then L2-normalised. Trained for one sequence length L.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Aggregator, l2n
from ..registry import register_aggregator


class FlattenFC(Aggregator):
    """[B, L, D] -> linear(L*D -> out) -> L2; only windows of ``length`` frames."""

    def __init__(self, length: int, in_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"fc needs a window length >= 1, got {length}")
        self.length = int(length)
        self.fc = nn.Linear(self.length * in_dim, out_dim or in_dim)

    def out_dim(self, in_dim: int) -> int:
        return self.fc.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return l2n(self.fc(x.flatten(1)))


class SeqNet(Aggregator):
    """[B, L, D] -> conv1d over time (width w) -> temporal mean -> L2."""

    def __init__(self, length: int, in_dim: int, out_dim: int = 4096,
                 kernel: int | None = None) -> None:
        super().__init__()
        kernel = kernel or min(5, length)
        if not 1 <= kernel <= length:
            raise ValueError(f"seqnet kernel must be 1..length={length}, got {kernel}")
        self.length = int(length)
        self.conv = nn.Conv1d(in_dim, out_dim, kernel)

    def out_dim(self, in_dim: int) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return l2n(self.conv(x.transpose(1, 2)).mean(-1))


@register_aggregator()
def fc(length: int, in_dim: int, out_dim: int | None = None) -> FlattenFC:
    """Flatten L x D, one linear layer (output size defaults to D)."""
    return FlattenFC(length, in_dim, out_dim)


@register_aggregator()
def seqnet(length: int, in_dim: int, out_dim: int = 4096, kernel: int | None = None) -> SeqNet:
    """SeqNet temporal convolution (4096-d, w = min(5, L) by default)."""
    return SeqNet(length, in_dim, out_dim, kernel)
