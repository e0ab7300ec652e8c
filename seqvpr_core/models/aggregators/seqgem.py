"""SeqGeM: generalised mean over time, per feature dimension (JIST).

Berton et al., "JIST: Joint Image and Sequence Training for Sequential Visual
Place Recognition", RA-L 2023. p is learnable; p=1 is the mean, p->inf the max.
Length-agnostic and invariant to frame order by construction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Aggregator, gem_mean, l2n
from ..registry import register_aggregator


class SeqGeM(Aggregator):
    """[B, T, D] -> [B, D]; features are clamped at ``eps`` (GeM needs x >= 0).

    JIST searches the raw SeqGeM vectors with L2 distance (``normalize=False``);
    normalised (the default) they are searched by inner product."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, normalize: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        y = gem_mean(x, self.p, 1, self.eps)
        return l2n(y) if self.normalize else y


@register_aggregator("seqgem")
def seqgem(p: float = 3.0, normalize: bool = True) -> SeqGeM:
    return SeqGeM(p=p, normalize=normalize)
