"""Nanne/pytorch-NetVlad: VGG-16 conv5 + NetVLAD, the single-image baseline.

The authors' ``checkpoint.pth.tar`` / ``model_best.pth.tar`` is ``{epoch,
state_dict, recalls, best_score, optimizer, parallel}``; the model is an
``nn.Module`` with ``encoder`` (VGG-16 ``features[:-2]``: conv1_1 .. conv5_3,
no last ReLU/pool; ``encoder.module.*`` with --nGPU > 1) and ``pool`` (NetVLAD:
``pool.centroids`` [K, D], ``pool.conv.weight`` [K, D, 1, 1], ``pool.conv.bias``
[K] only for --vladv2). It becomes a ``vgg16`` encoder with ``pool: netvlad``;
the sequence aggregator is ``--config``'s (single-frame retrieval, ``none``, by
default: NetVLAD describes one image). The authors evaluate on unresized
640x480 Pittsburgh images, the default image size here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from ..models import SequenceModel
from ..models.aggregators.netvlad import NetVLAD
from . import register_converter, register_fixture
from .release import require, strip_prefix, unprefixed

LOG = logging.getLogger(__name__)

POOL_KEYS = (r"pool\.centroids", r"pool\.conv\.weight")
VGG16_CONV5_3 = "28.weight"  # encoder index of conv5_3 in VGG-16 features[:-2]
IMAGE_SIZE = (480, 640)
SEQVLAD_KEYS = (r"centroids", r"conv\.weight")


def vlad_from_state(state: Mapping[str, torch.Tensor]) -> NetVLAD:
    """A NetVLAD/SeqVLAD layer from the authors' ``centroids`` and ``conv.weight``
    ([K, D, 1, 1] Conv2d or [K, D, 1] Conv1d) and, for vladv2, ``conv.bias``."""
    weight = state["conv.weight"]
    clusters, dim = weight.shape[:2]
    if tuple(state["centroids"].shape) != (clusters, dim):
        raise ValueError(f"centroids have shape {tuple(state['centroids'].shape)}, the "
                         f"assignment conv {tuple(weight.shape)}")
    vlad = NetVLAD(dim, clusters, "vladv2" if "conv.bias" in state else "vladv1")
    own = {"centroids": state["centroids"], "assign.weight": weight.reshape(clusters, dim)}
    if "conv.bias" in state:
        own["assign.bias"] = state["conv.bias"]
    vlad.load_state_dict(own)
    return vlad


def load_seqvlad(vlad: NetVLAD, state: Mapping[str, torch.Tensor]) -> None:
    """The authors' SeqVLAD (``conv.weight`` [K, D, 1] or [K, D, 1, 1], no bias;
    ``centroids`` [K, D]) into ``vlad`` (vladv1: no bias either)."""
    require(state, SEQVLAD_KEYS, "SeqVLAD")
    vlad.load_state_dict(vlad_from_state(state).state_dict())


def vlad_state(vlad: NetVLAD, prefix: str = "") -> dict[str, torch.Tensor]:
    """``vlad``'s tensors under our names (``prefix`` + centroids, assign.*)."""
    return {prefix + k: v for k, v in vlad.state_dict().items()}


def init_checks(fixture, state: Mapping[str, torch.Tensor], init: str) -> dict[str, Any]:
    """The authors' ``init_params`` rerun by ours on the fixture's centroids and
    descriptors: alpha, and the conv weight/bias/centroids against the file's."""
    vlad = NetVLAD(state["centroids"].shape[1], state["centroids"].shape[0], init)
    alpha = vlad.init_params(fixture.io["init_centroids"], fixture.io["init_descriptors"])
    out = {"init_alpha": torch.tensor([alpha], dtype=torch.float64),
           "init_conv_weight_vs_checkpoint": (
               vlad.assign.weight.reshape(state["conv.weight"].shape), state["conv.weight"]),
           "init_centroids_vs_checkpoint": (vlad.centroids, state["centroids"])}
    if "conv.bias" in state:
        out["init_conv_bias_vs_checkpoint"] = (vlad.assign.bias, state["conv.bias"])
    return out


def _release_parts(release: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    state = unprefixed(release)
    require(state, POOL_KEYS, "Nanne NetVLAD (encoder.*, pool.*)",
            allowed=[r"pool\.conv\.bias", r"encoder\..+"])
    return strip_prefix(state, "encoder."), strip_prefix(state, "pool.")


@register_converter("netvlad")
def convert_netvlad(release: Any, config: dict[str, Any]) -> SequenceModel:
    encoder_state, pool = _release_parts(release)
    vlad = vlad_from_state(pool)
    encoder = dict(config.get("encoder") or {})
    if encoder_state:
        if VGG16_CONV5_3 not in encoder_state:
            raise ValueError("the encoder is not VGG-16 up to conv5_3 (no encoder."
                             f"{VGG16_CONV5_3}); AlexNet NetVLAD files are not supported")
        encoder = {"name": "vgg16", "image_size": IMAGE_SIZE, **encoder}
    elif not encoder:
        raise ValueError("the file holds only the NetVLAD layer (no encoder.* keys); give "
                         "--config with encoder: {name: vgg16, weights: ...} making its "
                         f"{vlad.dim}-channel feature maps")
    encoder.update(pool="netvlad", pool_options={"clusters": vlad.clusters, "init": vlad.init})
    aggregator = config.get("aggregator") or {"name": "none"}
    model = SequenceModel({**config, "encoder": encoder, "aggregator": aggregator},
                          pretrained=not encoder_state)
    if model.encoder.head.vlad.dim != vlad.dim:
        raise ValueError(f"the NetVLAD layer takes {vlad.dim}-channel maps, the encoder "
                         f"{encoder['name']!r} makes {model.encoder.head.vlad.dim}-channel ones")
    if encoder_state:
        trunk = {f"backbone.{k}": v for k, v in encoder_state.items()}
        model.encoder.load_state_dict(trunk | vlad_state(vlad, "head.vlad."), strict=True)
    else:  # the --config trunk
        model.encoder.head.vlad.load_state_dict(vlad.state_dict())
    return model


@register_fixture("gen_netvlad", verifies=("seqvlad", "pool=netvlad"))
def run_fixture(fixture) -> dict[str, Any]:
    _, pool = _release_parts(fixture.release())
    vlad = vlad_from_state(pool).eval()
    maps = fixture.io["feature_maps"]
    return {"descriptor": vlad(maps.flatten(2).transpose(1, 2)),
            **init_checks(fixture, pool, vlad.init)}
