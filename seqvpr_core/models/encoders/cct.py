"""Compact Convolutional Transformer (CCT-14/7x2) frame encoders, tokens out.

Hassani et al., "Escaping the Big Data Paradigm with Compact Transformers",
2021. A two-layer convolutional tokenizer (7x7 conv, ReLU, 3x3 max-pool, twice:
stride 16 in all) feeds 14 transformer layers of 384-d tokens (6 heads, MLP
ratio 3) with a learnable position embedding; no class token. SeqVLAD
(Mereu et al., RA-L 2022; vandal-vpr/vg-transformers), STformer and
Adapt-STformer use its 384-d tokens, truncated to the first ``layers`` blocks
(their ``--trunc_te``).

Outputs (``output``):

- ``tokens``: the final tokens [N, 384] (after the last LayerNorm);
- ``seqpool``: the paper's attention-based sequence pooling, one raw [384]
  vector, as vg-transformers' CAT/FC models use it (``normalize=True``: ours,
  L2-normalised for inner-product search);
- ``tokens+patches``: the final tokens and the tokenizer's tokens side by side,
  [N, 768]: STformer's two branches both start from the tokenizer, and this way
  the per-frame part of both is encoded once (see ``aggregators/stformer.py``).

Module names mirror the authors' code (``tokenizer.conv_layers.*``,
``classifier.positional_emb``, ``classifier.blocks.<i>.{pre_norm, self_attn,
linear1, norm1, linear2}``, ``classifier.norm``, ``classifier.attention_pool``),
so their checkpoints load key for key (``seqvpr_core/convert/cct.py``).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..base import FrameEncoder, Preprocess, l2n
from ..layers import Attention
from ..registry import register_encoder
from ..weights import load_exact, read_state_dict, weights_to_load
from .cnn import IMAGENET_MEAN, IMAGENET_STD

FORMATS = "a CCT-14/7x2 state_dict in the Compact-Transformers layout"
EMBED, HEADS, MLP_RATIO, DEPTH, STEM = 384, 6, 3, 14, 64
OUTPUTS = ("tokens", "seqpool", "tokens+patches")


class CCTBlock(nn.Module):
    """CCT's encoder layer: pre-norm attention, then a norm *inside* the residual path.

    ``attn`` replaces the self-attention (STformer's space-time windows); it maps
    the normed [B, N, C] tokens to [B, N, C]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float,
                 attn: nn.Module | None = None) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim)
        self.self_attn = attn if attn is not None else Attention(dim, heads, qkv_bias=False)
        self.linear1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.linear2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(self.pre_norm(x)))
        return x + self.linear2(F.gelu(self.linear1(x)))


class Tokenizer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_layers = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(cin, cout, 7, stride=2, padding=3, bias=False), nn.ReLU(),
                          nn.MaxPool2d(3, stride=2, padding=1))
            for cin, cout in ((3, STEM), (STEM, dim))])
        for seq in self.conv_layers:
            nn.init.kaiming_normal_(seq[0].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x).flatten(2).transpose(1, 2)


def init_linear_and_norm(module: nn.Module) -> None:
    """CCT's init: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Classifier(nn.Module):
    """Position embedding + transformer layers + norm (+ sequence pooling)."""

    def __init__(self, n_tokens: int, layers: int, seqpool: bool) -> None:
        super().__init__()
        self.positional_emb = nn.Parameter(torch.empty(1, n_tokens, EMBED))
        self.blocks = nn.ModuleList(CCTBlock(EMBED, HEADS, MLP_RATIO) for _ in range(layers))
        self.norm = nn.LayerNorm(EMBED)
        self.attention_pool = nn.Linear(EMBED, 1) if seqpool else None
        self.apply(init_linear_and_norm)
        nn.init.trunc_normal_(self.positional_emb, std=0.2)


def freeze_te(module: nn.Module, blocks: nn.ModuleList, freeze: int | None,
              option: str) -> None:
    """vg-transformers' ``--freeze_te`` semantics (STformer's and Adapt-STformer's
    too): None or 0 trains everything; otherwise all of ``module`` is frozen except
    the ``blocks`` after index ``freeze`` (-1: every block trains; 1: blocks 0 and 1
    stay frozen). ``option`` names the setting in the error."""
    if not freeze:
        return
    if freeze < -1:
        raise ValueError(f"{option} must be >= -1, got {freeze}")
    module.requires_grad_(False)
    for block in blocks[freeze + 1:]:
        block.requires_grad_(True)


def token_side(image_size: int) -> int:
    """Tokens per side: two (stride-2 conv, stride-2 pool) pairs, each rounding up."""
    side = image_size
    for _ in range(4):
        side = math.ceil(side / 2)
    return side


def resize_positions(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A [1, s*s, C] position table on another (h, w) grid, [1, h*w, C]; bilinear, as
    the authors' ``pe_check`` (timm's ``resize_pos_embed``) does."""
    src = int(math.isqrt(pos.shape[1]))
    if src * src != pos.shape[1]:
        raise ValueError(f"position table of {pos.shape[1]} tokens is not a square grid")
    table = pos.reshape(1, src, src, -1).permute(0, 3, 1, 2).float()
    table = F.interpolate(table, size=grid, mode="bilinear", align_corners=False)
    return table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)


class CCTEncoder(FrameEncoder):
    """[B, 3, H, W] -> tokens [B, N, 384] (N = ceil(H/16) * ceil(W/16)), a pooled
    [B, 384], or tokens and tokenizer tokens [B, N, 768] (``output``). ``image_size``:
    S (square) or (H, W); the authors' CCT runs any size whose grid its table fits."""

    exportable = True  # ONNX Runtime: about 1.3x faster per frame on a CPU core

    def __init__(self, name: str, image_size: int | tuple[int, int], layers: int = DEPTH,
                 output: str = "tokens", freeze_layers: int | None = None,
                 normalize: bool = False) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if not 1 <= layers <= DEPTH:
            raise ValueError(f"layers must be 1..{DEPTH}, got {layers}")
        if normalize and output != "seqpool":
            raise ValueError("normalize applies to output='seqpool' only")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.token_grid = (token_side(size[0]), token_side(size[1]))
        self.name, self.output, self.normalize = name, output, normalize
        self.tokenizer = Tokenizer(EMBED)
        self.classifier = Classifier(self.token_grid[0] * self.token_grid[1], layers,
                                     output == "seqpool")
        self.dim = 2 * EMBED if output == "tokens+patches" else EMBED
        if output != "seqpool":
            self.grid = self.token_grid
        self.preprocess = Preprocess(size, IMAGENET_MEAN, IMAGENET_STD)
        self.freeze(freeze_layers)

    def freeze(self, freeze: int | None) -> None:
        """``--freeze_te`` (:func:`freeze_te`): the tokenizer, the position table, the
        final norm and the pooling freeze with blocks 0..freeze."""
        freeze_te(self, self.classifier.blocks, freeze, "freeze_layers")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.classifier
        patches = self.tokenizer(x)
        x = patches + c.positional_emb
        for block in c.blocks:
            x = block(x)
        x = c.norm(x)
        if self.output == "tokens+patches":
            return torch.cat([x, patches], dim=-1)
        if c.attention_pool is None:
            return x
        pooled = (c.attention_pool(x).softmax(dim=1) * x).sum(1)  # weights [B, N, 1]
        return l2n(pooled) if self.normalize else pooled

    def load_state(self, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
        """The authors' CCT keys (``tokenizer.*``, ``classifier.*``) into this encoder:
        a position table of another grid is resized, blocks past ``layers``, the
        ImageNet classifier and an unused pooling layer are left out."""
        state = dict(state)
        pos = state.get("classifier.positional_emb")
        if pos is not None and pos.shape != self.classifier.positional_emb.shape:
            state["classifier.positional_emb"] = resize_positions(pos, self.token_grid)
        n = len(self.classifier.blocks)
        ignored = {k for k in state if k.startswith("classifier.fc.")
                   or (k.startswith("classifier.blocks.") and int(k.split(".")[2]) >= n)
                   or (self.classifier.attention_pool is None
                       and k.startswith("classifier.attention_pool."))}
        load_exact(self, state, source, ignored)

    def load_weights(self, path: str | os.PathLike) -> None:
        self.load_state(read_state_dict(path, self.name, FORMATS), path)


def _cct(name: str, size: int, pretrained: bool, weights: str | None,
         image_size: int | tuple[int, int] | None, **kw) -> CCTEncoder:
    enc = CCTEncoder(name, image_size or size, **kw)
    if path := weights_to_load(name, pretrained, weights, FORMATS):
        enc.load_weights(path)
    return enc


@register_encoder()
def cct224(pretrained: bool = False, weights: str | None = None,
           image_size: int | tuple[int, int] | None = None, layers: int = DEPTH,
           output: str = "tokens", freeze_layers: int | None = None,
           normalize: bool = False) -> CCTEncoder:
    """CCT-14/7x2 at 224x224: 196 tokens of 384-d."""
    return _cct("cct224", 224, pretrained, weights, image_size, layers=layers, output=output,
                freeze_layers=freeze_layers, normalize=normalize)


@register_encoder()
def cct384(pretrained: bool = False, weights: str | None = None,
           image_size: int | tuple[int, int] | None = None, layers: int = DEPTH,
           output: str = "tokens", freeze_layers: int | None = None,
           normalize: bool = False) -> CCTEncoder:
    """CCT-14/7x2 at 384x384: 576 tokens of 384-d (SeqVLAD/STformer's backbone)."""
    return _cct("cct384", 384, pretrained, weights, image_size, layers=layers, output=output,
                freeze_layers=freeze_layers, normalize=normalize)
