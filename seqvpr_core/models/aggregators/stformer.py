"""STformer: spatial and windowed temporal transformers, summed, then SeqVLAD.

Zhao et al., "Learning Sequence Descriptor based on Spatio-Temporal Attention
for Visual Place Recognition" (STformer), RA-L 2024, arXiv:2305.11467. Frame
tokens come from a convolutional patch embedding (CCT's two conv layers, or any
token encoder). Two branches see the same tokens:

- spatial: a transformer encoder within each frame, with a learned absolute
  position embedding;
- temporal: every patch attends to the m x m patches around its own position
  in *every* frame of the window; the attention bias is a relative position
  encoding decomposed into height, width and time, b_h[dy] + b_w[dx] + b_t[dt],
  so it depends only on the offsets between query and key.

The branches are summed token by token and one NetVLAD pools all L x N
tokens. The time-bias table spans offsets of the trained window length, so
the window length is fixed. Prefix tokens (a ViT's CLS) are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator
from ..layers import Block, Mlp
from ..registry import register_aggregator
from .netvlad import NetVLAD


class WindowTemporalAttention(nn.Module):
    """[B, T, H, W, C] -> same; patch (t, i, j) attends to (t', i+dy, j+dx) for all t'
    and |dy|, |dx| <= m // 2, with bias b_t[t'-t] + b_h[dy] + b_w[dx] per head."""

    def __init__(self, dim: int, heads: int, window: int, length: int) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the temporal window must be an odd size >= 1, got {window}")
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.window, self.length = heads, window, length
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_h = nn.Parameter(torch.zeros(heads, window))  # offsets -m//2 .. m//2
        self.bias_w = nn.Parameter(torch.zeros(heads, window))
        self.bias_t = nn.Parameter(torch.zeros(heads, 2 * length - 1))  # -(L-1) .. L-1
        for p in (self.bias_h, self.bias_w, self.bias_t):
            nn.init.trunc_normal_(p, std=0.02)

    def relative_bias(self, t: int) -> torch.Tensor:
        """[heads, T (query frame), T * m * m (key frame, dy, dx)]."""
        frames = torch.arange(t, device=self.bias_t.device)
        dt = frames[None, :] - frames[:, None] + self.length - 1  # [query t, key t']
        bt = self.bias_t[:, dt]  # [h, T, T]
        bs = (self.bias_h[:, :, None] + self.bias_w[:, None, :]).flatten(1)  # [h, m*m]
        return (bt[..., None] + bs[:, None, None, :]).flatten(2)

    def _neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, H, W, C] -> [B, H*W, heads, T*m*m, C/heads] (zero outside the grid)."""
        b, t, h, w, c = x.shape
        m = self.window
        cols = F.unfold(x.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w), m, padding=m // 2)
        cols = cols.view(b, t, self.heads, c // self.heads, m * m, h * w)
        return cols.permute(0, 5, 2, 1, 4, 3).reshape(b, h * w, self.heads, t * m * m, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = x.shape
        m = self.window
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.reshape(b, t, h * w, self.heads, -1).permute(0, 2, 3, 1, 4)  # [B, HW, h, T, d]
        k, v = self._neighbours(k), self._neighbours(v)
        inside = F.unfold(x.new_ones(1, 1, h, w), m, padding=m // 2)[0].T.bool()  # [HW, m*m]
        inside = inside.repeat(1, t)[None, :, None, None, :]  # keys ordered (t', dy, dx)
        bias = self.relative_bias(t)[None, None]  # [1, 1, heads, T, T*m*m]
        bias = torch.where(inside, bias, float("-inf"))  # [1, HW, heads, T, T*m*m]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.permute(0, 3, 1, 2, 4).reshape(b, t, h, w, c))


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, length: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowTemporalAttention(dim, heads, window, length)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class STformer(Aggregator):
    """[B, L, P + H*W, C] tokens -> [B, K*C]."""

    input_kind = "tokens"

    def __init__(self, length: int, in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0,
                 heads: int = 8, window: int = 3, spatial_layers: int = 1,
                 temporal_layers: int = 1, clusters: int = 64) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"stformer needs a window length >= 1, got {length}")
        self.length, self.grid, self.prefix = int(length), tuple(grid), prefix_tokens
        n = self.grid[0] * self.grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, n, in_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.spatial = nn.Sequential(*(Block(in_dim, heads) for _ in range(spatial_layers)))
        self.temporal = nn.Sequential(*(TemporalBlock(in_dim, heads, window, self.length)
                                        for _ in range(temporal_layers)))
        self.vlad = NetVLAD(in_dim, clusters)

    def out_dim(self, in_dim: int) -> int:
        return self.vlad.clusters * self.vlad.dim

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, P + H*W, C] -> fused tokens [B, L, H*W, C] (both branches summed)."""
        self.check_length(x.shape[1])
        x = x[:, :, self.prefix:]
        b, t, n, c = x.shape
        h, w = self.grid
        spatial = self.spatial((x + self.pos_embed).flatten(0, 1)).view(b, t, n, c)
        temporal = self.temporal(x.reshape(b, t, h, w, c)).reshape(b, t, n, c)
        return spatial + temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vlad(self.encode_tokens(x).flatten(1, 2))


@register_aggregator()
def stformer(length: int, in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0,
             heads: int = 8, window: int = 3, spatial_layers: int = 1, temporal_layers: int = 1,
             clusters: int = 64) -> STformer:
    """STformer: spatial + m x m windowed temporal attention, NetVLAD over L x N tokens."""
    return STformer(length, in_dim, grid, prefix_tokens, heads, window, spatial_layers,
                    temporal_layers, clusters)
