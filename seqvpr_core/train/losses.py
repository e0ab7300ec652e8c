"""Losses: the triplet loss of the sequence branch and CosFace of JIST's image branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def triplet_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
                 margin: float = 0.1) -> torch.Tensor:
    """Mean over every (query, positive, negative) of max(0, |q-p| - |q-n| + margin).

    Args:
        q, p: [B, D] query and best-positive descriptors.
        n: [B, K, D] the K hardest negatives of each query.
    """
    d_pos = (q - p).norm(dim=-1)[:, None]  # [B, 1]
    d_neg = (q[:, None] - n).norm(dim=-1)  # [B, K]
    return F.relu(d_pos - d_neg + margin).mean()


class CosFace(nn.Module):
    """Large-margin cosine classifier (Wang et al., CVPR 2018), as CosPlace trains:
    logits s * (cos(f, w_y) - m) for the true class, s * cos(f, w_j) otherwise."""

    def __init__(self, dim: int, classes: int, scale: float = 30.0, margin: float = 0.4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale, self.margin = scale, margin

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B, D] features, int64 [B] labels -> cross-entropy of the margin logits."""
        cos = F.linear(F.normalize(features.float(), dim=-1), F.normalize(self.weight, dim=-1))
        logits = self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))
        return F.cross_entropy(logits, labels)
