"""ViT-B/16 frame encoder in torchvision's layout: CLS vector, tokens, or patch embeddings.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021. The modules are torchvision's own
(``torchvision.models.VisionTransformer``: ``conv_proj``, ``class_token``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_<i>.*``,
``encoder.ln``), so a ``vit_b_16`` state_dict a user saved loads from a local
file (``weights``); its classifier (``heads.*``) is not used, and a position
table for another image size is resized with torchvision's
``interpolate_embeddings`` (bicubic). Frames are resized to a square, as
torchvision's ViT requires.

``output``:
- ``cls``: the CLS token after the final norm, L2-normalised [D] (a global descriptor);
- ``tokens``: CLS + patch tokens after the final norm [1 + N, D] (token aggregators);
- ``patches``: only the patch embedding (``conv_proj``, no position, no
  transformer) [N, D]: the per-frame half of an early-fusion model
  (``timesformer``), which embeds each frame once and runs its space-time
  transformer over the window. From a ViT file only ``conv_proj`` is loaded.
"""

from __future__ import annotations

import os

import torch
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

from ..base import FrameEncoder, Preprocess, l2n
from ..layers import check_heads
from ..registry import register_encoder
from ..weights import load_exact, read_state_dict, weights_to_load
from .cnn import IMAGENET_MEAN, IMAGENET_STD

FORMATS = "a torchvision VisionTransformer state_dict (torchvision.models.vit_b_16 layout)"
OUTPUTS = ("cls", "tokens", "patches")


class ViTEncoder(FrameEncoder):
    """[B, 3, S, S] -> CLS [B, D], tokens [B, 1 + (S/p)^2, D] or patches [B, (S/p)^2, D]."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, layers: int = 12,
                 heads: int = 12, hidden_dim: int = 768, mlp_dim: int = 3072,
                 output: str = "cls", trainable_layers: int | None = None) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if image_size % patch_size:
            raise ValueError(f"vit needs an image side divisible by patch_size={patch_size}, "
                             f"got {image_size}")
        if trainable_layers is not None and not 0 <= trainable_layers <= layers:
            raise ValueError(f"trainable_layers must be 0..{layers}, got {trainable_layers}")
        if output == "patches":  # torchvision's patch embedding alone (and its init)
            layers, heads, mlp_dim = 0, 1, 1
        check_heads(hidden_dim, heads, "hidden_dim")
        vit = VisionTransformer(image_size, patch_size, layers, heads, hidden_dim, mlp_dim)
        self.image_size, self.patch_size, self.output = image_size, patch_size, output
        self.conv_proj = vit.conv_proj
        if output != "patches":  # the transformer itself; its classifier `heads` is dropped
            self.class_token = vit.class_token
            self.encoder = vit.encoder
        self.dim = hidden_dim
        side = image_size // patch_size
        if output != "cls":
            self.grid, self.prefix_tokens = (side, side), int(output == "tokens")
        self.preprocess = Preprocess((image_size, image_size), IMAGENET_MEAN, IMAGENET_STD)
        if trainable_layers is not None and output != "patches":
            frozen = [self.conv_proj, *self.encoder.layers[:layers - trainable_layers]]
            for module in frozen:
                module.requires_grad_(False)
            self.class_token.requires_grad_(False)
            self.encoder.pos_embedding.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)  # [B, N, D], row-major grid
        if self.output == "patches":
            return tokens
        tokens = torch.cat([self.class_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = self.encoder(tokens)  # + position, layers, final LayerNorm
        return tokens if self.output == "tokens" else l2n(tokens[:, 0])

    def load_weights(self, path: str | os.PathLike) -> None:
        """A torchvision ViT state_dict: ``heads.*`` dropped, the position table resized
        to this image size; with ``output="patches"`` only ``conv_proj`` is read."""
        state = read_state_dict(path, "vit", FORMATS)
        if self.output == "patches":
            ignored = {k for k in state if not k.startswith("conv_proj.")}
        else:
            ignored = {k for k in state if k.startswith("heads.")}
            pos = state.get("encoder.pos_embedding")
            if pos is not None and pos.shape != self.encoder.pos_embedding.shape:
                state = dict(interpolate_embeddings(self.image_size, self.patch_size, state))
        load_exact(self, state, path, ignored)


@register_encoder()
def vit(pretrained: bool = False, weights: str | None = None, image_size: int = 224,
        patch_size: int = 16, layers: int = 12, heads: int = 12, hidden_dim: int = 768,
        mlp_dim: int = 3072, output: str = "cls",
        trainable_layers: int | None = None) -> ViTEncoder:
    """ViT-B/16 (768-d, 12 layers) by default; ``weights``: a torchvision vit_b_16 file."""
    path = weights_to_load("vit", pretrained, weights, FORMATS)  # refused before building
    enc = ViTEncoder(int(image_size), patch_size, layers, heads, hidden_dim, mlp_dim, output,
                     trainable_layers)
    if path:
        enc.load_weights(path)
    return enc
