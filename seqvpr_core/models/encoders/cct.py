"""Compact Convolutional Transformer (CCT-14/7x2) frame encoders, tokens out.

Hassani et al., "Escaping the Big Data Paradigm with Compact Transformers",
2021. A two-layer convolutional tokenizer (7x7 conv, ReLU, 3x3 max-pool, twice:
stride 16 in all) feeds 14 transformer layers of 384-d tokens (6 heads, MLP
ratio 3) with a learnable position embedding; no class token. SeqVLAD
(Mereu et al., RA-L 2022), STformer and Adapt-STformer use its 384-d tokens,
often truncated to the first layers (``layers``). ``output="seqpool"`` is the
paper's attention-based sequence pooling, for aggregators that want one vector.

Module names mirror the authors' release (``tokenizer.conv_layers.*``,
``classifier.positional_emb``, ``classifier.blocks.<i>.{pre_norm, self_attn,
linear1, norm1, linear2}``, ``classifier.norm``, ``classifier.attention_pool``)
so their checkpoints load from a local file with ``weights``.
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


class CCTBlock(nn.Module):
    """CCT's encoder layer: pre-norm attention, then a norm *inside* the residual path."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, qkv_bias=False)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x).flatten(2).transpose(1, 2)


class Classifier(nn.Module):
    """Position embedding + transformer layers + norm (+ sequence pooling)."""

    def __init__(self, n_tokens: int, layers: int, seqpool: bool) -> None:
        super().__init__()
        self.positional_emb = nn.Parameter(torch.empty(1, n_tokens, EMBED))
        nn.init.trunc_normal_(self.positional_emb, std=0.2)
        self.blocks = nn.ModuleList(CCTBlock(EMBED, HEADS, MLP_RATIO) for _ in range(layers))
        self.norm = nn.LayerNorm(EMBED)
        self.attention_pool = nn.Linear(EMBED, 1) if seqpool else None


class CCTEncoder(FrameEncoder):
    """[B, 3, S, S] -> tokens [B, N, 384] (N = (S/16)^2) or a pooled [B, 384]."""

    exportable = True  # ONNX Runtime: about 1.3x faster per frame on a CPU core

    def __init__(self, name: str, image_size: int, layers: int = DEPTH, output: str = "tokens",
                 freeze_layers: int = 0) -> None:
        super().__init__()
        if output not in ("tokens", "seqpool"):
            raise ValueError(f"output must be 'tokens' or 'seqpool', got {output!r}")
        if not 1 <= layers <= DEPTH:
            raise ValueError(f"layers must be 1..{DEPTH}, got {layers}")
        side = image_size
        for _ in range(4):  # two (stride-2 conv, stride-2 pool) pairs
            side = math.ceil(side / 2)
        self.name, self.output = name, output
        self.tokenizer = Tokenizer(EMBED)
        self.classifier = Classifier(side * side, layers, output == "seqpool")
        self.dim = EMBED
        if output == "tokens":
            self.grid = (side, side)
        self.preprocess = Preprocess((image_size, image_size), IMAGENET_MEAN, IMAGENET_STD)
        if freeze_layers:  # SeqVLAD fine-tunes only the last layers
            for m in (self.tokenizer, *self.classifier.blocks[:freeze_layers]):
                m.requires_grad_(False)
            self.classifier.positional_emb.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.classifier
        x = self.tokenizer(x) + c.positional_emb
        for block in c.blocks:
            x = block(x)
        x = c.norm(x)
        if c.attention_pool is None:
            return x
        w = c.attention_pool(x).softmax(dim=1)  # [B, N, 1]
        return l2n((w * x).sum(1))

    def load_weights(self, path: str | os.PathLike) -> None:
        state = read_state_dict(path, self.name, FORMATS)
        pos = state.get("classifier.positional_emb")
        own = self.classifier.positional_emb
        if pos is not None and pos.shape != own.shape:  # trained at another resolution
            src = int(math.isqrt(pos.shape[1]))
            dst = int(math.isqrt(own.shape[1]))
            grid = pos.reshape(1, src, src, EMBED).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
            state["classifier.positional_emb"] = grid.permute(0, 2, 3, 1).reshape(1, -1, EMBED)
        n = len(self.classifier.blocks)
        ignored = {k for k in state if k.startswith("classifier.fc.")
                   or (k.startswith("classifier.blocks.") and int(k.split(".")[2]) >= n)
                   or (self.classifier.attention_pool is None
                       and k.startswith("classifier.attention_pool."))}
        load_exact(self, state, path, ignored)


def _cct(name: str, size: int, pretrained: bool, weights: str | None, image_size: int | None,
         **kw) -> CCTEncoder:
    enc = CCTEncoder(name, image_size or size, **kw)
    if path := weights_to_load(name, pretrained, weights, FORMATS):
        enc.load_weights(path)
    return enc


@register_encoder()
def cct224(pretrained: bool = False, weights: str | None = None, image_size: int | None = None,
           layers: int = DEPTH, output: str = "tokens", freeze_layers: int = 0) -> CCTEncoder:
    """CCT-14/7x2 at 224x224: 196 tokens of 384-d."""
    return _cct("cct224", 224, pretrained, weights, image_size, layers=layers, output=output,
                freeze_layers=freeze_layers)


@register_encoder()
def cct384(pretrained: bool = False, weights: str | None = None, image_size: int | None = None,
           layers: int = DEPTH, output: str = "tokens", freeze_layers: int = 0) -> CCTEncoder:
    """CCT-14/7x2 at 384x384: 576 tokens of 384-d (SeqVLAD/STformer's backbone)."""
    return _cct("cct384", 384, pretrained, weights, image_size, layers=layers, output=output,
                freeze_layers=freeze_layers)
