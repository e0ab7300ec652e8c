"""Torchvision CNN trunks cut before pooling: ResNet-18/50 and VGG-16 (conv5).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015. As in the
VPR literature (NetVLAD, CosPlace, JIST) the average pool and classifier are
dropped; ResNets may also be cut after layer 3 (stride 16), which keeps more
spatial detail. Berton et al., "Rethinking Visual Geo-localization for
Large-Scale Applications" (CosPlace, CVPR 2022) put L2-norm -> GeM -> linear ->
L2-norm on top; ``pool="gem"`` (with ``fc_dim``) is that head (``normalize=False``
drops the last L2-norm: vg-transformers' GeM frames are raw), ``pool="none"``
gives the feature map as tokens for NetVLAD-style aggregators, and ``pool="netvlad"``
/ ``pool="mixvpr"`` are the single-image heads of :mod:`.map_pooling`, set by
``pool_options``.

The trunk is stored as ``backbone.<i>`` (the children of the torchvision model
in order), which is CosPlace's own layout, so a CosPlace or JIST checkpoint
(``backbone.*``, ``aggregation.1.p``, ``aggregation.3.*``; JIST nests it under
``model.``) loads directly, and torchvision ImageNet files are renamed on load.
"""

from __future__ import annotations

import logging
import math
import os
import re

import torch
import torchvision
from torch import nn

from ..base import FrameEncoder, GeM, Preprocess, l2n
from ..registry import register_encoder
from ..weights import load_exact, read_state_dict, weights_to_load
from .map_pooling import MAP_POOLS

LOG = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMATS = "a torchvision, CosPlace or JIST state_dict"

# (channels after layer3, after layer4) of the ResNets.
RESNET_CHANNELS = {"resnet18": (256, 512), "resnet50": (1024, 2048)}
TORCHVISION_RESNET = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
VGG16_CONV5_END = 29  # features[:29] ends with conv5_3, before its ReLU and the last pool


def _halve(size: int, times: int, ceil: bool) -> int:
    for _ in range(times):
        size = math.ceil(size / 2) if ceil else size // 2
    return size


class CNNEncoder(FrameEncoder):
    """CNN trunk -> GeM head ([B, D]) or feature-map tokens ([B, H'*W', C])."""

    exportable = True  # may run in ONNX Runtime for inference

    def __init__(self, name: str, backbone: nn.Sequential, channels: int,
                 grid: tuple[int, int], image_size: tuple[int, int], pool: str,
                 fc_dim: int | None, freeze: int, normalize: bool = True,
                 pool_options: dict | None = None) -> None:
        super().__init__()
        pools = ("gem", "none", *MAP_POOLS)
        if pool not in pools:
            raise ValueError(f"pool must be one of {pools} ('none': the map as tokens), "
                             f"got {pool!r}")
        if fc_dim is not None and pool != "gem":
            raise ValueError("fc_dim needs pool='gem' (the projection acts on the pooled vector)")
        if pool_options and pool not in MAP_POOLS:
            raise ValueError(f"pool_options are for pool {sorted(MAP_POOLS)}, not {pool!r}")
        if not 0 <= freeze <= len(backbone):
            raise ValueError(f"freeze must be 0..{len(backbone)} backbone modules, got {freeze}")
        self.name = name
        self.backbone = backbone
        self.pool = pool
        self.normalize = normalize
        if pool == "gem":
            self.gem = GeM()
            self.fc = nn.Linear(channels, fc_dim) if fc_dim else None
            self.dim = fc_dim or channels
        elif pool == "none":
            self.dim = channels
            self.grid = grid
        else:
            try:
                self.head = MAP_POOLS[pool](channels, grid, **(pool_options or {}))
            except TypeError as exc:
                raise ValueError(f"pool_options for {pool!r}: {exc}") from None
            self.dim = self.head.dim
        self.preprocess = Preprocess(tuple(image_size), IMAGENET_MEAN, IMAGENET_STD)
        for module in list(backbone)[:freeze]:  # CosPlace trains only the last stages
            module.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.backbone(x))

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map [B, C, H, W] -> this encoder's output."""
        if self.pool == "none":
            return f.flatten(2).transpose(1, 2)
        if self.pool != "gem":
            return self.head(f)
        g = self.gem(l2n(f, dim=1))
        g = self.fc(g) if self.fc is not None else g
        return l2n(g) if self.normalize else g

    def load_weights(self, path: str | os.PathLike, rename) -> None:
        state = {}
        for key, value in read_state_dict(path, self.name, FORMATS).items():
            key = rename(key.removeprefix("model."))
            if key is not None:
                state[key] = value
        n_backbone = len(self.backbone)
        ignored = {k for k in state
                   if (k.startswith("backbone.") and int(k.split(".")[1]) >= n_backbone)
                   or k.startswith("seq_gem.")  # JIST's aggregator, not part of the encoder
                   or (self.pool != "gem" and k.startswith(("gem.", "fc.")))
                   or (getattr(self, "fc", None) is None and k.startswith("fc."))}
        # A new head on a pretrained trunk keeps its initial values.
        optional = {"gem.p", "fc.weight", "fc.bias"} | {
            k for k in self.state_dict() if k.startswith("head.")}
        load_exact(self, state, path, ignored, optional=optional)


def _rename_common(key: str) -> str:
    key = re.sub(r"^aggregation\.1\.p$", "gem.p", key)
    return re.sub(r"^aggregation\.3\.", "fc.", key)


def _rename_resnet(key: str) -> str | None:
    head = key.split(".")[0]
    if head == "fc":
        return None  # torchvision's ImageNet classifier
    if head in TORCHVISION_RESNET:
        return f"backbone.{TORCHVISION_RESNET[head]}{key[len(head):]}"
    return _rename_common(key)


def _rename_vgg(key: str) -> str | None:
    if key.startswith("classifier."):
        return None
    return _rename_common(re.sub(r"^features\.", "backbone.", key))


def _build(encoder: CNNEncoder, pretrained: bool, weights: str | None, rename) -> CNNEncoder:
    if path := weights_to_load(encoder.name, pretrained, weights, FORMATS):
        encoder.load_weights(path, rename)
    return encoder


def _resnet(name: str, pretrained: bool, weights: str | None, layer3_crop: bool,
            image_size: tuple[int, int], **head) -> CNNEncoder:
    tv = getattr(torchvision.models, name)(weights=None)
    children = list(tv.children())[:-2]  # drop avgpool and fc
    if layer3_crop:
        children = children[:-1]
    channels = RESNET_CHANNELS[name][0 if layer3_crop else 1]
    times = 4 if layer3_crop else 5
    grid = (_halve(image_size[0], times, True), _halve(image_size[1], times, True))
    enc = CNNEncoder(name, nn.Sequential(*children), channels, grid, image_size, **head)
    return _build(enc, pretrained, weights, _rename_resnet)


@register_encoder()
def resnet18(pretrained: bool = False, weights: str | None = None, layer3_crop: bool = False,
             pool: str = "gem", fc_dim: int | None = None,
             image_size: tuple[int, int] = (224, 224), freeze: int = 0, normalize: bool = True,
             pool_options: dict | None = None) -> CNNEncoder:
    """ResNet-18 trunk; ``weights``: torchvision, CosPlace or JIST file."""
    return _resnet("resnet18", pretrained, weights, layer3_crop, tuple(image_size), pool=pool,
                   fc_dim=fc_dim, freeze=freeze, normalize=normalize, pool_options=pool_options)


@register_encoder()
def resnet50(pretrained: bool = False, weights: str | None = None, layer3_crop: bool = False,
             pool: str = "gem", fc_dim: int | None = None,
             image_size: tuple[int, int] = (224, 224), freeze: int = 0, normalize: bool = True,
             pool_options: dict | None = None) -> CNNEncoder:
    """ResNet-50 trunk; ``weights``: torchvision, CosPlace, JIST or MixVPR file."""
    return _resnet("resnet50", pretrained, weights, layer3_crop, tuple(image_size), pool=pool,
                   fc_dim=fc_dim, freeze=freeze, normalize=normalize, pool_options=pool_options)


@register_encoder()
def vgg16(pretrained: bool = False, weights: str | None = None, pool: str = "gem",
          fc_dim: int | None = None, image_size: tuple[int, int] = (224, 224),
          freeze: int = 0, normalize: bool = True,
          pool_options: dict | None = None) -> CNNEncoder:
    """VGG-16 up to conv5_3 (512 channels, stride 16); torchvision or CosPlace file."""
    # Only the conv trunk: building torchvision's whole VGG would first initialise
    # its 120M-parameter classifier just to throw it away. Same init as torchvision.
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    backbone = nn.Sequential(*list(features.children())[:VGG16_CONV5_END])
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    image_size = tuple(image_size)
    grid = (_halve(image_size[0], 4, False), _halve(image_size[1], 4, False))
    enc = CNNEncoder("vgg16", backbone, 512, grid, image_size, pool, fc_dim, freeze, normalize,
                     pool_options)
    return _build(enc, pretrained, weights, _rename_vgg)
