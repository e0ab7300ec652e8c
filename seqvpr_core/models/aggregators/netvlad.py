"""NetVLAD and SeqVLAD: soft-assigned residuals to K learned cluster centres.

Arandjelović et al., "NetVLAD: CNN architecture for weakly supervised place
recognition", CVPR 2016: each (L2-normalised) local descriptor x is softly
assigned to centre c_k by softmax_k(w_k.x + b_k); V_k = sum a_k(x) (x - c_k),
then intra-normalisation per cluster and a final L2-norm (cluster-major flatten,
index k*D + d).

Mereu et al., "Learning Sequential Descriptors for Sequence-based Visual Place
Recognition" (SeqVLAD), RA-L 2022: one NetVLAD over the local features of *all*
frames of the window. The sum over descriptors makes it length-agnostic and
invariant to frame order.

Initialisation is the authors' ``init_params`` (k-means centres and the
descriptors they were found on), in the two variants of Nanne's pytorch-NetVlad,
which vg-transformers (SeqVLAD), STformer and Adapt-STformer copy as ``vladv1``:

- ``vladv1``: no bias; w_k = alpha c_k/|c_k| with alpha = -ln(0.01) / mean over the
  descriptors of (largest - second largest dot product with the unit centres), so
  the nearest centre starts ~100x likelier than the second. Centres are found on
  L2-normalised descriptors.
- ``vladv2``: w_k = 2 alpha c_k, b_k = -alpha |c_k| (the norm, not the paper's
  squared norm), with alpha = -ln(0.01) / mean_k(s_k1 - s_k0), s_kj the *square of
  the index* (not the distance) of the j-th nearest descriptor to c_k, as the
  authors' ``NearestNeighbors().kneighbors(...)[1]`` computes it. Centres are found
  on raw descriptors. Reproduced as written so their files and runs match.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator, l2n
from ..registry import register_aggregator

VLAD_INITS = ("vladv1", "vladv2")


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


def vlad_alpha(centroids: torch.Tensor, descriptors: torch.Tensor, init: str) -> float:
    """The sharpness alpha of the authors' ``init_params`` (float64 arithmetic)."""
    c, d = centroids.double(), descriptors.double()
    if init == "vladv1":
        dots = (c / c.norm(dim=1, keepdim=True)) @ d.T  # [K, M]
        top2 = dots.topk(2, dim=0).values
        gap = float((top2[0] - top2[1]).mean())
    elif init == "vladv2":
        if len(d) < 2:
            raise ValueError("vladv2 initialisation needs at least 2 descriptors")
        nearest = torch.cdist(c, d).topk(2, dim=1, largest=False).indices  # [K, 2]
        squared = nearest.double().pow(2)  # the authors square indices, not distances
        gap = float((squared[:, 1] - squared[:, 0]).mean())
    else:
        raise ValueError(f"NetVLAD init must be one of {VLAD_INITS}, got {init!r}")
    if not math.isfinite(gap) or gap == 0.0:
        raise ValueError(f"{init} initialisation is degenerate (mean gap {gap}): the "
                         "descriptors do not separate the centres")
    return -math.log(0.01) / gap


class NetVLAD(nn.Module):
    """[B, M, D] local descriptors -> L2-normalised [B, K*D].

    ``init``: the authors' initialisation (module docstring); ``vladv2`` also
    gives the assignment a bias, ``vladv1`` (SeqVLAD's, the default) has none."""

    def __init__(self, dim: int, clusters: int = 64, init: str = "vladv1") -> None:
        super().__init__()
        if init not in VLAD_INITS:
            raise ValueError(f"NetVLAD init must be one of {VLAD_INITS}, got {init!r}")
        self.dim, self.clusters, self.init = dim, clusters, init
        # The authors' constructor: uniform centres and a default-initialised 1x1 conv,
        # until init_params sets both from k-means.
        self.centroids = nn.Parameter(torch.rand(clusters, dim))
        self.assign = nn.Linear(dim, clusters, bias=init == "vladv2")

    @torch.no_grad()
    def init_params(self, centroids: torch.Tensor, descriptors: torch.Tensor) -> float:
        """The authors' ``init_params(clsts, traindescs)``: centres [K, D] (stored as
        given) and the descriptors [M, D] they came from; returns alpha."""
        alpha = vlad_alpha(centroids, descriptors, self.init)
        c = centroids.double()
        self.centroids.copy_(centroids)
        if self.init == "vladv1":
            self.assign.weight.copy_(alpha * c / c.norm(dim=1, keepdim=True))
        else:
            self.assign.weight.copy_(2.0 * alpha * c)
            self.assign.bias.copy_(-alpha * c.norm(dim=1))
        return alpha

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor, seed: int = 0) -> float:
        """k-means on sampled local descriptors [..., D], then :meth:`init_params`
        (on L2-normalised descriptors for vladv1, raw ones for vladv2, as the authors
        cluster them); returns alpha."""
        x = features.detach().reshape(-1, self.dim).float().cpu()
        if self.init == "vladv1":
            x = l2n(x)
        return self.init_params(kmeans(x, self.clusters, seed=seed).to(self.centroids), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 for half-precision models too: assignment logits reach ~alpha
        # (~50..200), where float16 steps by 0.125, and every weight would be off.
        dtype, x = x.dtype, l2n(x.float())
        bias = None if self.assign.bias is None else self.assign.bias.float()
        a = F.linear(x, self.assign.weight.float(), bias).softmax(-1)  # [B, M, K]
        vlad = (torch.einsum("bmk,bmd->bkd", a, x)
                - a.sum(1).unsqueeze(-1) * self.centroids.float())
        return l2n(l2n(vlad, dim=-1).flatten(1)).to(dtype)


class SeqVLAD(Aggregator):
    """[B, T, N, C] tokens (or [B, T, D] vectors, one token each) -> [B, K*C]."""

    input_kind = "any"

    def __init__(self, in_dim: int, clusters: int = 64, init: str = "vladv1") -> None:
        super().__init__()
        self.vlad = NetVLAD(in_dim, clusters, init)

    def out_dim(self, in_dim: int) -> int:
        return self.vlad.clusters * self.vlad.dim

    def init_from_features(self, features: torch.Tensor, seed: int = 0) -> float:
        """k-means initialisation from frame features [..., C] (e.g. a cached sample)."""
        return self.vlad.init_from_features(features, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        return self.vlad(x.reshape(len(x), -1, x.shape[-1]))


@register_aggregator()
def seqvlad(in_dim: int, clusters: int = 64, init: str = "vladv1") -> SeqVLAD:
    """SeqVLAD: NetVLAD over all tokens of all frames (K=64 and the authors' vladv1
    init, no assignment bias, as in the paper)."""
    return SeqVLAD(in_dim, clusters, init)
