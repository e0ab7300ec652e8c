"""NetVLAD and SeqVLAD: soft-assigned residuals to K learned cluster centres.

Arandjelović et al., "NetVLAD: CNN architecture for weakly supervised place
recognition", CVPR 2016: each (L2-normalised) local descriptor x is softly
assigned to centre c_k by softmax_k(w_k.x + b_k); V_k = sum a_k(x) (x - c_k),
then intra-normalisation per cluster and a final L2-norm. Initialised from
k-means with w_k = 2 alpha c_k and b_k = -alpha |c_k|^2, so the assignment starts
as a soft nearest-centre rule.

Mereu et al., "Learning Sequential Descriptors for Sequence-based Visual Place
Recognition" (SeqVLAD), RA-L 2022: one NetVLAD over the local features of *all*
frames of the window. The sum over descriptors makes it length-agnostic and
invariant to frame order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator, l2n
from ..registry import register_aggregator


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means on [N, D] with k-means++ seeding; returns centres [k, D]."""
    if len(x) < k:
        raise ValueError(f"k-means needs at least {k} features to find {k} clusters, "
                         f"got {len(x)}")
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):  # k-means++: far points are likelier seeds
        d2 = torch.cdist(x, centres).min(dim=1).values.pow(2)
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / len(d2))
        centres = torch.cat([centres, x[torch.multinomial(probs, 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


class NetVLAD(nn.Module):
    """[B, M, D] local descriptors -> L2-normalised [B, K*D]."""

    def __init__(self, dim: int, clusters: int = 64, alpha: float = 100.0) -> None:
        super().__init__()
        self.dim, self.clusters = dim, clusters
        self.centroids = nn.Parameter(l2n(torch.randn(clusters, dim)))
        self.assign = nn.Linear(dim, clusters)
        self._set_assignment(self.centroids.data, alpha)

    def _set_assignment(self, centres: torch.Tensor, alpha: float) -> None:
        with torch.no_grad():
            self.centroids.copy_(centres)
            self.assign.weight.copy_(2.0 * alpha * centres)
            self.assign.bias.copy_(-alpha * centres.pow(2).sum(1))

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor, seed: int = 0) -> None:
        """k-means on sampled local descriptors [..., D]; alpha makes the nearest
        centre ~100x likelier than the second nearest on average."""
        x = l2n(features.detach().reshape(-1, self.dim).float().cpu())
        centres = kmeans(x, self.clusters, seed=seed)
        d = torch.cdist(x, centres).pow(2).topk(2, dim=1, largest=False).values
        gap = (d[:, 1] - d[:, 0]).mean().clamp(min=1e-6)
        self._set_assignment(centres.to(self.centroids), float(-math.log(0.01) / gap))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 for half-precision models too: assignment logits reach ~2 alpha
        # (~200), where float16 steps by 0.125, and every weight would be off by ~13%.
        dtype, x = x.dtype, l2n(x.float())
        logits = F.linear(x, self.assign.weight.float(), self.assign.bias.float())
        a = logits.softmax(-1)  # [B, M, K]
        vlad = (torch.einsum("bmk,bmd->bkd", a, x)
                - a.sum(1).unsqueeze(-1) * self.centroids.float())
        return l2n(l2n(vlad, dim=-1).flatten(1)).to(dtype)


class SeqVLAD(Aggregator):
    """[B, T, N, C] tokens (or [B, T, D] vectors, one token each) -> [B, K*C]."""

    input_kind = "any"

    def __init__(self, in_dim: int, clusters: int = 64) -> None:
        super().__init__()
        self.vlad = NetVLAD(in_dim, clusters)

    def out_dim(self, in_dim: int) -> int:
        return self.vlad.clusters * self.vlad.dim

    def init_from_features(self, features: torch.Tensor, seed: int = 0) -> None:
        """k-means initialisation from frame features [..., C] (e.g. a cached sample)."""
        self.vlad.init_from_features(features, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return self.vlad(x.reshape(len(x), -1, x.shape[-1]))


@register_aggregator()
def seqvlad(in_dim: int, clusters: int = 64) -> SeqVLAD:
    """SeqVLAD: NetVLAD over all tokens of all frames (K=64 as in the paper)."""
    return SeqVLAD(in_dim, clusters)
