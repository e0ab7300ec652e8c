"""DINOv2 ViT-S/14 and ViT-B/14 frame encoders: CLS + patch tokens out.

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision",
TMLR 2024. A plain ViT with 14-pixel patches, LayerScale and a learned position
embedding for a square G x G grid (``pos_grid``: 37 for the released 518-pixel training
crops; a model built with another ``img_size`` has another), resized to any input
whose sides are multiples of 14 as the authors' ``interpolate_pos_encoding`` does:
bicubic, with scale factors ((rows + 0.1) / G, (cols + 0.1) / G) rather than the
output size (``interpolate_offset``; 0 resizes to the size) and no antialiasing
(``interpolate_antialias``). Parameter names are those of the official
``dinov2_vit{s,b}14_pretrain.pth`` files (``cls_token``, ``pos_embed``,
``mask_token``, ``patch_embed.proj``, ``blocks.<i>.*``, ``norm``), which load
strictly from a local file; ``layers`` keeps the first blocks only. Only the last
``trainable_blocks`` blocks (and the final norm) are trained, as in DINOv2-based
VPR heads. ``output="cls"`` is the final-norm CLS token, L2-normalised unless
``normalize=False`` (the authors' ``forward``: raw).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..base import FrameEncoder, Preprocess, l2n
from ..layers import Block
from ..registry import register_encoder
from ..weights import load_exact, read_state_dict, weights_to_load
from .cnn import IMAGENET_MEAN, IMAGENET_STD

PATCH = 14
PRETRAIN_GRID = 37  # 518 / 14: the released files' position table
FORMATS = "the official DINOv2 state_dict (dinov2_vit*14_pretrain.pth)"
ARCHS = {"dinov2_vits14": (384, 12, 6), "dinov2_vitb14": (768, 12, 12)}  # dim, depth, heads


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2Encoder(FrameEncoder):
    """[B, 3, H, W] -> [B, 1 + (H/14)(W/14), C] (CLS first), or the CLS vector [B, C]."""

    def __init__(self, name: str, image_size: tuple[int, int] = (224, 224),
                 trainable_blocks: int = 4, output: str = "tokens", layers: int | None = None,
                 normalize: bool = True, interpolate_offset: float = 0.1,
                 interpolate_antialias: bool = False, pos_grid: int = PRETRAIN_GRID) -> None:
        super().__init__()
        dim, full_depth, heads = ARCHS[name]
        depth = full_depth if layers is None else int(layers)
        h, w = image_size
        if h % PATCH or w % PATCH:
            raise ValueError(f"{name} needs image sides divisible by {PATCH}, got {image_size}; "
                             f"e.g. {(h // PATCH * PATCH or PATCH, w // PATCH * PATCH or PATCH)}")
        if output not in ("tokens", "cls"):
            raise ValueError(f"output must be 'tokens' or 'cls', got {output!r}")
        if pos_grid < 1:
            raise ValueError(f"pos_grid must be a positive grid side, got {pos_grid}")
        if not 1 <= depth <= full_depth:
            raise ValueError(f"layers must be 1..{full_depth} blocks, got {layers}")
        if not 0 <= trainable_blocks <= depth:
            raise ValueError(f"trainable_blocks must be 0..{depth}, got {trainable_blocks}")
        self.name, self.output, self.normalize = name, output, normalize
        self.interpolate_offset, self.interpolate_antialias = interpolate_offset, \
            interpolate_antialias
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_grid = int(pos_grid)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pos_grid ** 2, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        # Used only by DINOv2's masked-image pre-training; kept so the file loads strictly.
        self.register_buffer("mask_token", torch.zeros(1, dim))
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList(Block(dim, heads, 4.0, layer_scale=1e-5)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dim = dim
        if output == "tokens":
            self.grid, self.prefix_tokens = (h // PATCH, w // PATCH), 1
        self.preprocess = Preprocess((h, w), IMAGENET_MEAN, IMAGENET_STD)
        frozen = [self.cls_token, self.pos_embed, *self.patch_embed.parameters()]
        for block in self.blocks[:depth - trainable_blocks]:
            frozen += list(block.parameters())
        for p in frozen:
            p.requires_grad_(False)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """[1, 1 + rows*cols, C]: the pos_grid x pos_grid table resized to the input's
        patch grid, as the authors' ``interpolate_pos_encoding``."""
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = self.pos_grid
        if (rows, cols) != (side, side):
            grid = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            if self.interpolate_offset:  # the scale factor also sets the sampling grid
                resize = {"scale_factor": ((rows + self.interpolate_offset) / side,
                                           (cols + self.interpolate_offset) / side)}
            else:
                resize = {"size": (rows, cols)}
            grid = F.interpolate(grid.float(), mode="bicubic",
                                 antialias=self.interpolate_antialias, **resize)
            if tuple(grid.shape[-2:]) != (rows, cols):
                raise ValueError(f"interpolate_offset {self.interpolate_offset} resizes the "
                                 f"position table to {tuple(grid.shape[-2:])}, not {(rows, cols)}")
            patch_pos = grid.to(patch_pos.dtype).permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(rows, cols)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        if self.output == "tokens":
            return tokens
        return l2n(tokens[:, 0]) if self.normalize else tokens[:, 0]

    def load_weights(self, path: str | os.PathLike) -> None:
        """Strict: every tensor of the official file, nothing else."""
        load_exact(self, read_state_dict(path, self.name, FORMATS), path)


def _dinov2(name: str, pretrained: bool, weights: str | None, **kw) -> DinoV2Encoder:
    enc = DinoV2Encoder(name, **kw)
    if path := weights_to_load(name, pretrained, weights, FORMATS):
        enc.load_weights(path)
    return enc


@register_encoder()
def dinov2_vits14(pretrained: bool = False, weights: str | None = None,
                  image_size: tuple[int, int] = (224, 224), trainable_blocks: int = 4,
                  output: str = "tokens", layers: int | None = None, normalize: bool = True,
                  interpolate_offset: float = 0.1, interpolate_antialias: bool = False,
                  pos_grid: int = PRETRAIN_GRID) -> DinoV2Encoder:
    """DINOv2 ViT-S/14 (384-d, 12 blocks); ``weights``: dinov2_vits14_pretrain.pth."""
    return _dinov2("dinov2_vits14", pretrained, weights, image_size=tuple(image_size),
                   trainable_blocks=trainable_blocks, output=output, layers=layers,
                   normalize=normalize, interpolate_offset=interpolate_offset,
                   interpolate_antialias=interpolate_antialias, pos_grid=pos_grid)


@register_encoder()
def dinov2_vitb14(pretrained: bool = False, weights: str | None = None,
                  image_size: tuple[int, int] = (224, 224), trainable_blocks: int = 4,
                  output: str = "tokens", layers: int | None = None, normalize: bool = True,
                  interpolate_offset: float = 0.1, interpolate_antialias: bool = False,
                  pos_grid: int = PRETRAIN_GRID) -> DinoV2Encoder:
    """DINOv2 ViT-B/14 (768-d, 12 blocks); ``weights``: dinov2_vitb14_pretrain.pth."""
    return _dinov2("dinov2_vitb14", pretrained, weights, image_size=tuple(image_size),
                   trainable_blocks=trainable_blocks, output=output, layers=layers,
                   normalize=normalize, interpolate_offset=interpolate_offset,
                   interpolate_antialias=interpolate_antialias, pos_grid=pos_grid)
