"""Adapt-STformer: a recurrent deformable transformer encoder, SeqGeM, SeqVLAD.

Lau et al., "Flexible and Efficient Spatio-Temporal Transformer for Sequential
Visual Place Recognition" (Adapt-STformer), 2025. One shared deformable
transformer encoder layer is applied recurrently: at step t its query is the
previous step's output (the first query is frame 1's tokens plus a learnable
offset) and its values are frame t's tokens. The per-step outputs are pooled
over time per token with SeqGeM, then all tokens with NetVLAD (SeqVLAD). Cost
and memory grow linearly with the window length, which may be anything.

Deformable attention (Zhu et al., "Deformable DETR", ICLR 2021), single scale:
each query predicts, per head, K sampling offsets around its reference point
(the token's own position on a uniform grid) and K softmax weights; values are
read by bilinear ``grid_sample``. A query touches K points per head instead of
all N tokens, so the cost is O(N K), linear in the number of tokens. Written
in plain PyTorch (no custom CUDA op).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator, gem_mean, l2n
from ..registry import register_aggregator
from .netvlad import NetVLAD


class DeformableAttention(nn.Module):
    """query [B, N, C], value [B, H*W, C] on a grid -> [B, N, C]; N = H*W queries,
    each sampling ``points`` locations per head around its own grid position."""

    def __init__(self, dim: int, heads: int = 8, points: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.points = heads, points
        self.sampling_offsets = nn.Linear(dim, heads * points * 2)
        self.attention_weights = nn.Linear(dim, heads * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        # Deformable DETR's start: head h looks in direction 2*pi*h/heads, point k
        # at distance k+1 (in tokens), all points weighted equally.
        angles = torch.arange(heads) * (2 * math.pi / heads)
        dirs = torch.stack([angles.cos(), angles.sin()], -1)
        dirs = dirs / dirs.abs().amax(-1, keepdim=True)
        steps = torch.arange(1, points + 1).view(1, points, 1)
        with torch.no_grad():
            nn.init.zeros_(self.sampling_offsets.weight)
            self.sampling_offsets.bias.copy_((dirs[:, None, :] * steps).flatten())
            nn.init.zeros_(self.attention_weights.weight)
            nn.init.zeros_(self.attention_weights.bias)

    @staticmethod
    def reference_points(h: int, w: int, device=None) -> torch.Tensor:
        """Token centres as grid_sample (x, y) in [-1, 1]: [H*W, 2]."""
        ys = (torch.arange(h, device=device) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=device) + 0.5) / w * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy], -1).reshape(-1, 2)

    def forward(self, query: torch.Tensor, value: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = query.shape
        h, w = grid
        hd = c // self.heads
        offsets = self.sampling_offsets(query).view(b, n, self.heads, self.points, 2)
        scale = query.new_tensor([2.0 / w, 2.0 / h])  # one token step in grid units
        ref = self.reference_points(h, w, query.device).to(query.dtype)
        loc = ref[None, :, None, None, :] + offsets * scale  # [B, N, heads, K, 2]
        v = self.value_proj(value).view(b, h, w, self.heads, hd).permute(0, 3, 4, 1, 2)
        sampled = F.grid_sample(v.reshape(b * self.heads, hd, h, w),
                                loc.permute(0, 2, 1, 3, 4).reshape(b * self.heads, n,
                                                                    self.points, 2),
                                mode="bilinear", padding_mode="zeros", align_corners=False)
        weights = self.attention_weights(query).view(b, n, self.heads, self.points).softmax(-1)
        weights = weights.permute(0, 2, 1, 3).reshape(b * self.heads, 1, n, self.points)
        out = (sampled * weights).sum(-1)  # [B*heads, hd, N]
        return self.output_proj(out.view(b, c, n).transpose(1, 2))


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer (as Deformable DETR): attention then FFN."""

    def __init__(self, dim: int, heads: int, points: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.attn = DeformableAttention(dim, heads, points)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.ReLU(),
                                 nn.Linear(int(dim * mlp_ratio), dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, value: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        x = self.norm1(query + self.attn(query, value, grid))
        return self.norm2(x + self.ffn(x))


class AdaptSTformer(Aggregator):
    """[B, T, P + H*W, C] tokens, any T -> [B, K*C]."""

    input_kind = "tokens"

    def __init__(self, in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0,
                 heads: int = 8, points: int = 4, layers: int = 1, clusters: int = 64,
                 p: float = 3.0) -> None:
        super().__init__()
        self.grid, self.prefix = tuple(grid), prefix_tokens
        self.query_offset = nn.Parameter(torch.zeros(in_dim))
        self.layers = nn.ModuleList(DeformableEncoderLayer(in_dim, heads, points)
                                    for _ in range(layers))
        self.p = nn.Parameter(torch.tensor(float(p)))  # SeqGeM exponent
        self.vlad = NetVLAD(in_dim, clusters)

    def out_dim(self, in_dim: int) -> int:
        return self.vlad.clusters * self.vlad.dim

    def recurrent_states(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, P + N, C] -> per-step outputs [B, T, N, C]; step t reads frame t."""
        self.check_length(x.shape[1])
        x = x[:, :, self.prefix:]
        query = x[:, 0] + self.query_offset
        states = []
        for t in range(x.shape[1]):
            for layer in self.layers:
                query = layer(query, x[:, t], self.grid)
            states.append(query)
        return torch.stack(states, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = gem_mean(self.recurrent_states(x), self.p, 1)  # SeqGeM per token
        return l2n(self.vlad(pooled))


@register_aggregator()
def adapt_stformer(in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0, heads: int = 8,
                   points: int = 4, layers: int = 1, clusters: int = 64) -> AdaptSTformer:
    """Adapt-STformer: recurrent deformable encoder (8 heads, K=4), SeqGeM, SeqVLAD."""
    return AdaptSTformer(in_dim, grid, prefix_tokens, heads, points, layers, clusters)
