"""CosPlace (Berton et al., CVPR 2022) and JIST (Berton et al., RA-L 2023) releases.

CosPlace's file is the bare state dict of its ``GeoLocalizationNet``: ``backbone.*``
(a torchvision ResNet ``children()[:-2]``, layer4 kept, or VGG-16 ``features[:-2]``,
as ``nn.Sequential`` indices) and ``aggregation`` = L2Norm, GeM (``aggregation.1.p``,
shape [1]), Flatten, Linear (``aggregation.3.*``), L2Norm: unit frame descriptors.
It becomes our CNN encoder with ``pool: gem`` and ``fc_dim``; the sequence aggregator
is ``--config``'s (single-frame retrieval, ``none``, by default).

JIST's ``best_model.pth`` is the bare state dict of its ``JistModel``: the CosPlace
network under ``model.`` and SeqGeM's ``seq_gem.p``; ``last_checkpoint.pth`` holds
it under ``model_state_dict``. SeqGeM's output is raw (JIST indexes it with
``faiss.IndexFlatL2``): the aggregator is ``seqgem`` with ``normalize: false`` and
the model's metric ``l2``. JIST trains only layer4 of the ResNet (plus GeM p, the
FC and SeqGeM p) on 480x640 frames: ``freeze: 7`` and that image size; CosPlace
trains layer3 and layer4 (``freeze: 6``; VGG-16: conv5 only) on 512x512 images.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models import SequenceModel
from . import register_converter, register_fixture
from .release import cnn_trunk, only_under, require, strip_prefix, unprefixed

COSPLACE_KEYS = (r"backbone\.\d+\..+", r"aggregation\.1\.p", r"aggregation\.3\.weight",
                 r"aggregation\.3\.bias")
# Frozen leading trunk modules while training (the authors' requires_grad=False).
FREEZE = {"cosplace": {"resnet18": 6, "resnet50": 6, "vgg16": 24},
          "jist": {"resnet18": 7, "resnet50": 7}}
IMAGE_SIZE = {"cosplace": (512, 512), "jist": (480, 640)}


def cosplace_encoder(state: dict[str, torch.Tensor], release: str,
                     config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Our encoder config and tensors for a CosPlace network's keys (``backbone.*``,
    ``aggregation.*``); ``config``: the user's ``encoder`` entries (e.g. image_size)."""
    require(state, COSPLACE_KEYS, f"{release} (CosPlace GeoLocalizationNet)")
    trunk = strip_prefix(state, "backbone.")
    arch = cnn_trunk(trunk)
    if arch.get("layer3_crop"):
        raise ValueError("a CosPlace network keeps the ResNet's layer4 (backbone.7), this one "
                         "ends at layer3")
    if arch["name"] not in FREEZE[release]:
        raise ValueError(f"{release} with a {arch['name']} backbone is not supported "
                         f"(the authors' code runs {sorted(FREEZE[release])})")
    fc = strip_prefix(state, "aggregation.3.")
    encoder = {**arch, "pool": "gem", "fc_dim": int(fc["weight"].shape[0]),
               "image_size": IMAGE_SIZE[release], "freeze": FREEZE[release][arch["name"]],
               **config}
    tensors = {f"backbone.{k}": v for k, v in trunk.items()}
    tensors.update({"gem.p": state["aggregation.1.p"].reshape(()), "fc.weight": fc["weight"],
                    "fc.bias": fc["bias"]})
    return encoder, tensors


def _model(encoder: dict[str, Any], encoder_state: dict[str, torch.Tensor],
           aggregator: dict[str, Any], config: dict[str, Any]) -> SequenceModel:
    model = SequenceModel({**config, "encoder": encoder, "aggregator": aggregator},
                          pretrained=False)
    model.encoder.load_state_dict(encoder_state, strict=True)
    return model


@register_converter("cosplace")
def convert_cosplace(release: Any, config: dict[str, Any]) -> SequenceModel:
    state = unprefixed(release)
    encoder, tensors = cosplace_encoder(state, "cosplace", dict(config.get("encoder") or {}))
    return _model(encoder, tensors, config.get("aggregator") or {"name": "none"}, config)


@register_converter("jist")
def convert_jist(release: Any, config: dict[str, Any]) -> SequenceModel:
    state = unprefixed(release)
    only_under(state, ("model.", "seq_gem."), "JIST")
    encoder, tensors = cosplace_encoder(strip_prefix(state, "model."), "jist",
                                        dict(config.get("encoder") or {}))
    aggregator = dict(config.get("aggregator") or {})
    if "seq_gem.p" in state:
        if aggregator.get("name", "seqgem") != "seqgem":
            raise ValueError(f"the file holds SeqGeM (seq_gem.p), not {aggregator['name']!r}")
        model = _model(encoder, tensors, {"normalize": False, **aggregator, "name": "seqgem"},
                       config)
        model.aggregator.p.data.copy_(state["seq_gem.p"].reshape(()))
        return model
    if not aggregator:
        raise ValueError("the file has no seq_gem.p: its aggregation (concat / mean / max) "
                         "holds no weights; give --config with aggregator: {...}")
    return _model(encoder, tensors, aggregator, config)


@register_fixture("gen_jist", verifies=("resnet18", "seqgem"))
def run_fixture(fixture) -> dict[str, Any]:
    frames = fixture.frames_nhwc()
    model = convert_jist(fixture.release(),
                         {"encoder": {"image_size": tuple(frames.shape[1:3])}}).eval()
    clips = fixture.io["clip_index"]
    x = model.preprocess(frames)[clips.flatten()]
    feature_maps = model.encoder.backbone(x)
    descriptors = model.encoder.pooled(feature_maps)
    given = fixture.io.get("agg_frame_descriptors")
    out = {"backbone_features": feature_maps, "frame_descriptors": descriptors,
           "sequence_descriptors": model.aggregate(descriptors.unflatten(0, tuple(clips.shape)))}
    if given is not None:
        out["agg_sequence_descriptors"] = model.aggregate(given.unflatten(0, (-1, clips.shape[1])))
    return out
