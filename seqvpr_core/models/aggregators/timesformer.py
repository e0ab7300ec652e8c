"""TimeSformer: divided space-time attention over all patches of all frames (early fusion).

Bertasius, Wang & Torresani, "Is Space-Time Attention All You Need for Video
Understanding?", ICML 2021, the "divided space-time" (T+S) variant. Every block
first attends along time (each patch position across the window's frames),
then along space (all patches of one frame, with the CLS token), then an MLP;
the window descriptor is the CLS token after the final norm. As in the authors'
code (facebookresearch/TimeSformer ``lib/models/vit.py``): a learned spatial
position table for CLS + patches and a temporal one per frame; the CLS token
takes part in spatial attention only, once per frame, and its per-frame
results are averaged; the temporal branch ends in a linear ``temporal_fc``
initialised to zero, so a fresh model starts as a per-frame transformer;
Linear weights are truncated-normal (std 0.02) and the time table starts at
zero. Parameter names follow the authors' (``cls_token``, ``pos_embed``,
``time_embed``, ``blocks.<i>.{temporal_norm1, temporal_attn, temporal_fc,
norm1, attn, norm2, mlp}``, ``norm``); the patch embedding is the frame
encoder (``vit`` with ``output="patches"``), so each frame is embedded once
and cached in the ring, while the space-time transformer re-runs over the
whole window. Stochastic depth and dropout are left out.

Window length: the time table has ``frames`` rows (the authors train with 8);
a window of another length T uses the table resized to T by nearest-neighbour
interpolation, as the authors' code does, so any length is accepted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator, l2n
from ..layers import Attention, Mlp
from ..registry import register_aggregator


class DividedSpaceTimeBlock(nn.Module):
    """Temporal attention, spatial attention (with CLS), MLP; patches kept as [B, N, T, C]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Each patch position attends to itself in every frame: [B, N, T, C] -> same."""
        b, n, t, c = x.shape
        res = self.temporal_attn(self.temporal_norm1(x.reshape(b * n, t, c)))
        return x + self.temporal_fc(res.view(b, n, t, c))

    def spatial(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's patches attend to each other and to CLS: the residuals for
        CLS [B, C] (averaged over frames) and for the patches [B, N, T, C]."""
        b, n, t, c = x.shape
        frames = x.permute(0, 2, 1, 3).reshape(b * t, n, c)
        cls_per_frame = cls[:, None].expand(b, t, c).reshape(b * t, 1, c)
        res = self.attn(self.norm1(torch.cat([cls_per_frame, frames], dim=1)))
        cls_res = res[:, 0].view(b, t, c).mean(1)
        return cls_res, res[:, 1:].view(b, t, n, c).permute(0, 2, 1, 3)

    def forward(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xt = self.temporal(x)
        cls_res, x_res = self.spatial(cls, xt)
        # the authors' residual: CLS from before the block, patches after temporal attention
        cls, x = cls + cls_res, xt + x_res
        return cls + self.mlp(self.norm2(cls)), x + self.mlp(self.norm2(x))


class TimeSformer(Aggregator):
    """[B, T, P + H*W, C] patch embeddings -> CLS descriptor [B, C], any T >= 1."""

    input_kind = "tokens"
    fusion = "early"

    def __init__(self, in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0,
                 frames: int = 8, depth: int = 12, heads: int = 12,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if frames < 1 or depth < 1:
            raise ValueError(f"timesformer needs frames >= 1 and depth >= 1, got {frames}, "
                             f"{depth}")
        self.grid, self.prefix = tuple(grid), prefix_tokens
        n = self.grid[0] * self.grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, in_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, in_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, frames, in_dim))
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(in_dim, heads, mlp_ratio)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def time_embedding(self, t: int) -> torch.Tensor:
        """[T, C]: the table itself for T = ``frames``, else resized (nearest)."""
        table = self.time_embed
        if t != table.shape[1]:
            table = F.interpolate(table.transpose(1, 2), size=t, mode="nearest").transpose(1, 2)
        return table[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        x = x[:, :, self.prefix:]  # a token encoder's CLS is not a patch
        b, t, n, c = x.shape
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, 1, c)[:, 0]
        patches = (x + self.pos_embed[:, 1:]).transpose(1, 2)  # [B, N, T, C], + space
        patches = patches + self.time_embedding(t)  # + time
        for block in self.blocks:
            cls, patches = block(cls, patches)
        return l2n(self.norm(cls))


@register_aggregator()
def timesformer(in_dim: int, grid: tuple[int, int], prefix_tokens: int = 0, frames: int = 8,
                depth: int = 12, heads: int = 12, mlp_ratio: float = 4.0) -> TimeSformer:
    """TimeSformer (divided space-time), TimeSformer-Base sizes over ViT-B/16 patches."""
    return TimeSformer(in_dim, grid, prefix_tokens, frames, depth, heads, mlp_ratio)
