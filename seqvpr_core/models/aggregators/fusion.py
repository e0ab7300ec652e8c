"""Learned fusion of a window of frame vectors: ``fc`` (fixed length) and ``seqnet``.

- ``fc`` (intermediate fusion, the learned baseline of Mereu et al., SeqVLAD,
  RA-L 2022): flatten the L x D matrix and project it with one linear layer.
- ``seqnet``: Garg & Milford, "SeqNet: Learning Descriptors for Sequence-Based
  Hierarchical Place Recognition", RA-L 2021: a 1-D temporal convolution of
  width w over the frame descriptors, averaged over the remaining time steps,
  then L2-normalised; length-agnostic (any window of at least w frames).
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Aggregator, l2n
from ..registry import register_aggregator


class FlattenFC(Aggregator):
    """[B, L, D] -> linear(L*D -> out) -> L2; only windows of ``length`` frames.
    ``normalize=False``: the raw projection (vg-transformers' FC)."""

    def __init__(self, length: int, in_dim: int, out_dim: int | None = None,
                 normalize: bool = True) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"fc needs a window length >= 1, got {length}")
        self.length = int(length)
        self.normalize = normalize
        self.fc = nn.Linear(self.length * in_dim, out_dim or in_dim)

    def out_dim(self, in_dim: int) -> int:
        return self.fc.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        y = self.fc(x.flatten(1))
        return l2n(y) if self.normalize else y


class SeqNet(Aggregator):
    """[B, T, D] -> conv1d over time (width w) -> temporal mean -> L2.

    Any window of at least w frames: the authors train at one L and evaluate the
    same weights at others (their README trains at L=10 and tests at L=5)."""

    def __init__(self, in_dim: int, out_dim: int = 4096, kernel: int = 5) -> None:
        super().__init__()
        if kernel < 1:
            raise ValueError(f"seqnet kernel must be >= 1, got {kernel}")
        self.min_length = int(kernel)
        self.conv = nn.Conv1d(in_dim, out_dim, kernel)

    def out_dim(self, in_dim: int) -> int:
        return self.conv.out_channels

    def temporal_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution averaged over its output steps, before the L2 norm."""
        self.check_length(x.shape[1])
        return self.conv(x.transpose(1, 2)).mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2n(self.temporal_mean(x))


@register_aggregator()
def fc(length: int, in_dim: int, out_dim: int | None = None, normalize: bool = True
       ) -> FlattenFC:
    """Flatten L x D, one linear layer (output size defaults to D)."""
    return FlattenFC(length, in_dim, out_dim, normalize)


@register_aggregator()
def seqnet(in_dim: int, out_dim: int = 4096, kernel: int = 5) -> SeqNet:
    """SeqNet temporal convolution (4096-d, w = 5 as in the authors' class)."""
    return SeqNet(in_dim, out_dim, kernel)
