"""Adapt-STformer: a recurrent deformable cross-attention over the frames, SeqGeM, SeqVLAD.

Lau et al., "Flexible and Efficient Spatio-Temporal Transformer for Sequential
Visual Place Recognition" (Adapt-STformer), ICRA 2026; the authors' code is
ai4ce/Adapt-STFormer (``svpr/models/detr.py`` ``Detr``,
``spatial_cross_attention.py`` ``SpatialCrossAttention2D``, ``seqGem.py``
``SeqGeM_modified``, ``adapt_stformer.py`` ``Bev_RGB_Fusion``).

One deformable cross-attention layer (Zhu et al., "Deformable DETR", ICLR 2021)
is applied recurrently: the first query is frame 1's tokens plus a learned
offset per token; at step t the query attends to frame t's tokens and becomes
``LayerNorm(query + Dropout(output_proj(sampled)))`` (no feed-forward layer).
Each query token predicts, per head, K offsets around its reference point (its
own cell centre; offsets are in tokens, divided by the stored ``normalizer``)
and K softmax weights; values are read by bilinear ``grid_sample``. The per-step
states are pooled over time per token with SeqGeM (the authors'
``seqgem_modified.p``), then all tokens with SeqVLAD. Any window length.

Two of the authors' choices are reproduced because their weights were trained
with them:

- ``frame_reshape='view'``: their Detr reads each frame's [N, C] token matrix
  with ``.view(B, C, H, W)`` then flattens and transposes it, i.e. the N*C
  numbers in memory order read as a [C, N] matrix, transposed. That is not the
  token matrix (it mixes tokens and channels). ``'tokens'`` uses the tokens.
- ``levels > 1`` with the single value map: their CUDA path
  (``MultiScaleDeformableAttnFunction_fp32``, "deviates from the original
  intended usage" in their words) keeps, per sample, the first N*heads*K
  numbers of the level-major sampling locations and weights (softmaxed over
  levels*K) and reads them as one level of K points. This module computes the
  same in PyTorch. Their CPU path (mmcv's ``multi_scale_deformable_attn_pytorch``)
  runs only with one level, where both agree.

Streaming split: the CCT frame encoder runs once per frame (ring); this
recurrence starts from the window's first frame, so it runs once per window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator, gem_mean
from ..layers import check_heads
from ..registry import register_aggregator
from .netvlad import NetVLAD

FRAME_RESHAPES = ("view", "tokens")


def cell_centres(h: int, w: int) -> torch.Tensor:
    """Reference points: each token's cell centre as (x, y) in [0, 1], [H*W, 2]."""
    ys = (torch.arange(h) + 0.5) / h
    xs = (torch.arange(w) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(-1, 2)


class DeformableCrossAttention(nn.Module):
    """query [B, N, C] (N = H*W, one per reference point), value [B, H*W, C] on the
    grid -> query + Dropout(output_proj(deformable sampling of value_proj(value)))."""

    def __init__(self, dim: int, grid: tuple[int, int], heads: int = 8, levels: int = 1,
                 points: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        check_heads(dim, heads)
        if levels < 1 or points < 1:
            raise ValueError(f"levels and points must be >= 1, got {levels}, {points}")
        self.heads, self.levels, self.points, self.grid = heads, levels, points, tuple(grid)
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        h, w = self.grid
        self.register_buffer("reference_points", cell_centres(h, w))
        # Offsets are in units of 1/normalizer of the map: the authors store (24, 24),
        # one token of the 24x24 grid of CCT-384.
        self.register_buffer("normalizer", torch.tensor([float(w), float(h)]))
        self._init_weights()

    def _init_weights(self) -> None:
        """The authors' init: head h looks along angle 2 pi h / heads (cos, sin, not
        rescaled to the square as in Deformable DETR), point k at distance k+1;
        uniform attention; Xavier-uniform projections."""
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1).view(self.heads, 1, 1, 2)
        grid = grid.repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1).view(1, 1, -1, 1)
        with torch.no_grad():
            nn.init.zeros_(self.sampling_offsets.weight)
            self.sampling_offsets.bias.copy_(grid.flatten())
            nn.init.zeros_(self.attention_weights.weight)
            nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def sample_points(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling locations [B, N, heads, K, 2] in [0, 1] and weights [B, N, heads, K]."""
        b, n, _ = query.shape
        shape = (b, n, self.heads, self.levels, self.points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(b, n, self.heads, -1).softmax(-1)
        loc = self.reference_points[None, :, None, None, None, :] + offsets / self.normalizer
        # One value level: keep what the authors' kernel reads (see the module doc).
        k = n * self.heads * self.points
        loc = loc.reshape(b, -1)[:, :2 * k].view(b, n, self.heads, self.points, 2)
        return loc, weights.reshape(b, -1)[:, :k].view(b, n, self.heads, self.points)

    def forward(self, query: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, n, c = query.shape
        h, w = self.grid
        v = self.value_proj(value).transpose(1, 2).reshape(b * self.heads, c // self.heads, h, w)
        loc, weights = self.sample_points(query)
        grid = (2 * loc - 1).transpose(1, 2).flatten(0, 1)  # [B*heads, N, K, 2] as (x, y)
        sampled = F.grid_sample(v, grid.to(v.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # [B*heads, C/heads, N, K]
        weights = weights.transpose(1, 2).reshape(b * self.heads, 1, n, self.points)
        out = (sampled * weights).sum(-1).view(b, c, n).transpose(1, 2)
        return query + self.dropout(self.output_proj(out))


class AdaptSTformer(Aggregator):
    """[B, T, P + H*W, C] tokens, any T -> [B, K*C]."""

    input_kind = "tokens"

    def __init__(self, in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0,
                 heads: int = 8, levels: int = 2, points: int = 8, clusters: int = 64,
                 p: float = 3.0, frame_reshape: str = "view") -> None:
        super().__init__()
        if frame_reshape not in FRAME_RESHAPES:
            raise ValueError(f"frame_reshape must be one of {FRAME_RESHAPES}, "
                             f"got {frame_reshape!r}")
        self.grid, self.prefix, self.frame_reshape = tuple(grid), prefix_tokens, frame_reshape
        n = self.grid[0] * self.grid[1]
        offset = torch.empty(1, n, in_dim)
        nn.init.xavier_uniform_(offset)  # as the authors', on their [1, N, C] tensor
        self.query_offset = nn.Parameter(offset[0])
        self.cross_attention = DeformableCrossAttention(in_dim, self.grid, heads, levels, points)
        self.cross_attn_norm = nn.LayerNorm(in_dim)
        self.p = nn.Parameter(torch.tensor(float(p)))  # SeqGeM exponent
        self.vlad = NetVLAD(in_dim, clusters)

    def out_dim(self, in_dim: int) -> int:
        return self.vlad.clusters * self.vlad.dim

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, P + N, C] -> the [B, T, N, C] the recurrence reads (the authors'
        ``.view`` of each frame with ``frame_reshape='view'``)."""
        x = x[:, :, self.prefix:]
        if self.frame_reshape == "tokens":
            return x
        b, t, n, c = x.shape
        return x.reshape(b, t, c, n).transpose(-1, -2)

    def recurrent_states(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, P + N, C] -> the query after each frame [B, T, N, C]."""
        self.check_length(x.shape[1])
        frames = self.frames(x)
        query = frames[:, 0] + self.query_offset
        states = []
        for t in range(frames.shape[1]):
            query = self.cross_attn_norm(self.cross_attention(query, frames[:, t]))
            states.append(query)
        return torch.stack(states, 1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """SeqGeM of the states over time, per token and channel: [B, N, C]."""
        return gem_mean(self.recurrent_states(x), self.p, 1)

    def init_from_features(self, features: torch.Tensor, seed: int = 0) -> None:
        """SeqVLAD centres from frame tokens (the authors use the encoder's tokens)."""
        self.vlad.init_from_features(features, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vlad(self.pooled(x))


@register_aggregator()
def adapt_stformer(in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0, heads: int = 8,
                   levels: int = 2, points: int = 8, clusters: int = 64, p: float = 3.0,
                   frame_reshape: str = "view") -> AdaptSTformer:
    """Adapt-STformer with the authors' defaults: recurrent deformable cross-attention
    (8 heads, their 2 levels of 8 points read as their CUDA path reads them on the one
    value map; ``levels=1``: all points used, their CPU path), SeqGeM, SeqVLAD K = 64,
    their frame view (``frame_reshape='tokens'``: the token matrix)."""
    return AdaptSTformer(in_dim, grid, prefix_tokens, heads, levels, points, clusters, p,
                         frame_reshape)
