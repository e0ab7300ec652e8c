"""Learning-free fusion of a window's frame features: cat, avg, max, none.

``cat`` is late fusion by concatenation (Facil et al., "Condition-invariant
multi-view place recognition", 2019). With L2-normalised frames, the inner
product of two concatenations divided by L is the mean frame similarity along
the diagonal: SeqSLAM's constant-velocity sequence score.
"""

from __future__ import annotations

import torch

from ..base import Aggregator, l2n
from ..registry import register_aggregator


class Concat(Aggregator):
    """[B, L, D] -> [B, L*D] in time order; needs exactly ``length`` frames.
    ``normalize=False``: the raw concatenation (vg-transformers' CAT)."""

    def __init__(self, length: int, normalize: bool = True) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"cat needs a window length >= 1, got {length}")
        self.length = int(length)
        self.normalize = normalize

    def out_dim(self, in_dim: int) -> int:
        return in_dim * self.length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        x = x.flatten(1)
        return l2n(x) if self.normalize else x


class Mean(Aggregator):
    """Average of the frame features, any length, order-invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return l2n(x.mean(1))


class Max(Aggregator):
    """Element-wise max over time, any length, order-invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return l2n(x.amax(1))


class LastFrame(Aggregator):
    """Single-frame retrieval: the descriptor of the window's newest frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return l2n(x[:, -1])


@register_aggregator("cat")
def cat(length: int, normalize: bool = True) -> Concat:
    return Concat(length, normalize)


@register_aggregator("avg")
def avg() -> Mean:
    return Mean()


@register_aggregator("max")
def max_() -> Max:
    return Max()


@register_aggregator("none")
def none() -> LastFrame:
    return LastFrame()

