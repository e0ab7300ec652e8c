"""MixVPR (Ali-bey et al., WACV 2023; amaralibey/MixVPR): ResNet + feature mixing.

The released ``resnet50_MixVPR_4096.ckpt`` is the bare state dict of ``VPRModel``
(Lightning's training files wrap it under ``state_dict``): ``backbone.model.*`` (a
torchvision ResNet by module name, layer4 dropped with ``layers_to_crop=[4]``) and
``aggregator.*`` (``mix.{i}.mix.{0,1,3}`` LayerNorm / Linear / Linear over the H*W
axis, ``channel_proj``, ``row_proj``). It becomes a ResNet encoder with ``pool:
mixvpr``: one L2-normalised frame descriptor; the sequence aggregator is
``--config``'s (single-frame retrieval, ``none``, by default). Every MixVPR size is
read from the weights; the row projection fixes H*W, so the image size is the
square one that gives it (320x320 for the release's 20x20 layer-3 grid) unless
``--config`` sets another with the same grid size. The authors train at 320x320
with conv1 .. layer2 frozen (``layers_to_freeze=2``: ``freeze: 6``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..models import SequenceModel
from ..models.encoders.cnn import TORCHVISION_RESNET
from ..models.encoders.map_pooling import MixVPRPool
from . import register_converter, register_fixture
from .release import cnn_trunk, only_under, require, state_dict_of, strip_prefix

HEAD_KEYS = (r"channel_proj\.(weight|bias)", r"row_proj\.weight")
MIXER_KEYS = (r"mix\.\d+\.mix\.[013]\.(weight|bias)",)  # none with mix_depth=0
FREEZE = 6  # conv1, bn1, relu, maxpool, layer1, layer2


def head_options(state: dict[str, torch.Tensor]) -> tuple[int, int, dict[str, Any]]:
    """(in_channels, H*W, ``pool_options``) of MixVPR aggregator tensors."""
    require(state, HEAD_KEYS, "MixVPR aggregator", allowed=[r"row_proj\.bias", *MIXER_KEYS])
    out_rows, hw = state["row_proj.weight"].shape
    out_channels, channels = state["channel_proj.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("mix.")})
    ratio = 1.0  # no mixers (mix_depth=0): nothing to read it from, nothing it changes
    if depth:
        if "mix.0.mix.1.weight" not in state:
            raise ValueError("not a MixVPR aggregator checkpoint: no mix.0.mix.1.weight")
        hidden = state["mix.0.mix.1.weight"].shape[0]
        ratio = hidden / hw
        if int(hw * ratio) != hidden:  # the authors' int(hw * mlp_ratio) must give it back
            ratio = (hidden + 0.5) / hw
    return channels, hw, {"out_channels": out_channels, "mix_depth": depth,
                          "mlp_ratio": ratio, "out_rows": out_rows,
                          "row_bias": "row_proj.bias" in state}


def _torchvision_indices(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        head = key.split(".")[0]
        if head not in TORCHVISION_RESNET:
            raise ValueError(f"unexpected backbone key backbone.model.{key}")
        out[f"{TORCHVISION_RESNET[head]}{key[len(head):]}"] = value
    return out


@register_converter("mixvpr")
def convert_mixvpr(release: Any, config: dict[str, Any]) -> SequenceModel:
    state = state_dict_of(release)
    only_under(state, ("backbone.model.", "aggregator."), "MixVPR VPRModel")
    channels, hw, options = head_options(strip_prefix(state, "aggregator."))
    trunk = _torchvision_indices(strip_prefix(state, "backbone.model."))
    if not trunk:
        raise ValueError("the file holds only the MixVPR aggregator (no backbone.model.* "
                         "keys); MixVPR releases hold the whole VPRModel")
    arch = cnn_trunk(trunk)
    encoder = {**arch, "pool": "mixvpr", "pool_options": options, "freeze": FREEZE,
               **dict(config.get("encoder") or {})}
    if "image_size" not in encoder:
        side = math.isqrt(hw)
        if side * side != hw:
            raise ValueError(f"the MixVPR head takes a {hw}-cell grid, not a square; give "
                             "--config with encoder: {image_size: [H, W]} making it")
        stride = 16 if arch.get("layer3_crop") else 32
        encoder["image_size"] = (side * stride, side * stride)
    model = SequenceModel({**config, "encoder": encoder,
                           "aggregator": config.get("aggregator") or {"name": "none"}},
                          pretrained=False)
    if model.encoder.head.channel_proj.in_features != channels:
        raise ValueError(f"the MixVPR head takes {channels}-channel maps, the backbone makes "
                         f"{model.encoder.head.channel_proj.in_features}-channel ones")
    tensors = {f"backbone.{k}": v for k, v in trunk.items()}
    head = {f"head.{k}": v for k, v in strip_prefix(state, "aggregator.").items()}
    model.encoder.load_state_dict(tensors | head, strict=True)
    return model


@register_fixture("gen_mixvpr", verifies=("pool=mixvpr",))
def run_fixture(fixture) -> dict[str, Any]:
    state = strip_prefix(state_dict_of(fixture.release()), "aggregator.")
    maps = fixture.io["feature_maps"]
    channels, hw, options = head_options(state)
    if channels != maps.shape[1] or hw != maps.shape[2] * maps.shape[3]:
        raise ValueError(f"the head takes {channels}x{hw} maps, the fixture feeds "
                         f"{tuple(maps.shape[1:])}")
    head = MixVPRPool(channels, tuple(maps.shape[2:]), **options).eval()
    head.load_state_dict(state)
    out = {"descriptor": head(maps), "mix_output": head.mixed(maps)}
    x = maps.flatten(2)
    for i, layer in enumerate(head.mix):
        x = layer(x)
        out[f"mixer{i}_output"] = x
    return out
