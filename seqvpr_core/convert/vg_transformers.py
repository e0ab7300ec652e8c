"""vg-transformers (Mereu et al., SeqVLAD, RA-L 2022): TVGNet = encoder, pooling, aggregator.

The authors' ``last_model.pth`` / ``best_model.pth`` is ``{epoch_num,
model_state_dict, optimizer_state_dict, recalls, best_r5, not_improved_num}``
from a DataParallel TVGNet (``module.`` on every key). What the keys say:

- ``encoder.*``: a torchvision ResNet-18/50 cut after layer3 (``r*l3``: children
  ``0, 1, 4, 5, 6``) or layer4 (``r*l4``, also ``7``), VGG-16 conv1_1..conv5_3
  (``0`` .. ``28``), or CCT (``tokenizer.*``, ``classifier.*``: TVGNet, mapped by
  :func:`~.cct.cct_encoder_from_release`). No ``encoder.*`` (a head-only file): the
  frame encoder comes from ``--config``.
- ``pooling.1.p``: L2-norm, GeM, flatten (raw frame vectors: the encoder's ``pool:
  gem`` with ``normalize: false``); ``pooling.{centroids,conv.weight}``: NetVLAD
  pooling; nothing: tokens (``_``/``none``), or a parameter-free SPoC/MAC/R-MAC
  that cannot be told apart and is not supported.
- ``aggregator.{centroids,conv.weight}``: SeqVLAD over all tokens of the window
  (no bias; Conv1d weight [64, D, 1] on tokens, Conv2d [64, D, 1, 1] on maps);
  ``aggregator.1.{weight,bias}``: FC over the L stacked frame vectors (L = its
  input size / the frame size); nothing: CAT, whose L the file does not store
  (``--config`` ``aggregator: {length: L}``).

CAT and FC descriptors are raw, as the authors search them (L2 distance): the
converted model's ``metric`` is ``l2``. SeqVLAD's are L2-normalised.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from inspect import signature
from typing import Any

import torch
from torch import nn

from ..models import FrameEncoder, SequenceModel, create_aggregator, create_encoder
from ..models.encoders.cnn import CNNEncoder
from ..models.registry import AGGREGATORS
from . import register_converter, register_fixture
from .cct import cct_encoder_from_release
from .netvlad import init_checks, vlad_from_state, vlad_state
from .release import cnn_trunk, only_under, strip_prefix, unprefixed

Tensors = dict[str, torch.Tensor]
# Frozen leading trunk modules while training: ResNets before --freeze_layer (layer3 by
# default), VGG-16 all but its last 5 layers (conv5).
FREEZE = {"resnet18": 6, "resnet50": 6, "vgg16": 24}


@dataclass
class TVGNetRelease:
    encoder: Tensors
    pooling: Tensors
    aggregator: Tensors

    @classmethod
    def parse(cls, release: Any) -> TVGNetRelease:
        state = unprefixed(release, ("model_state_dict", "state_dict"))
        prefixes = ("encoder.", "pooling.", "aggregator.")
        only_under(state, prefixes, "vg-transformers TVGNet")
        if not state:
            raise ValueError("not a vg-transformers TVGNet checkpoint: no encoder.*, "
                             "pooling.* or aggregator.* tensors")
        return cls(*(strip_prefix(state, prefix) for prefix in prefixes))

    @property
    def aggregation(self) -> str:
        if {"centroids", "conv.weight"} <= set(self.aggregator):
            return "seqvlad"
        if {"1.weight", "1.bias"} <= set(self.aggregator):
            return "fc"
        if not self.aggregator:
            return "cat"
        raise ValueError(f"unknown TVGNet aggregator keys {sorted(self.aggregator)[:6]} "
                         "(expected SeqVLAD centroids/conv.weight, FC 1.weight/1.bias or none)")

    @property
    def is_cct(self) -> bool:
        return any(k.startswith(("tokenizer.", "classifier.")) for k in self.encoder)


def cnn_pooling(parts: TVGNetRelease) -> tuple[dict[str, Any], Tensors]:
    """The CNN encoder options of the file's pooling and our tensors for them."""
    if "1.p" in parts.pooling:
        return {"pool": "gem", "normalize": False}, {"gem.p": parts.pooling["1.p"].reshape(())}
    if {"centroids", "conv.weight"} <= set(parts.pooling):
        vlad = vlad_from_state(parts.pooling)
        return ({"pool": "netvlad", "pool_options": {"clusters": vlad.clusters,
                                                     "init": vlad.init}},
                vlad_state(vlad, "head.vlad."))
    if parts.pooling:
        raise ValueError(f"unknown TVGNet pooling keys {sorted(parts.pooling)[:6]}")
    if parts.aggregation in ("cat", "fc"):
        raise ValueError(f"a {parts.aggregation.upper()} TVGNet on a CNN needs pooled frame "
                         "vectors, and the file has no pooling parameters: parameter-free "
                         "SPoC / MAC / R-MAC pooling is not supported")
    return {"pool": "none"}, {}


def frame_encoder(parts: TVGNetRelease, config: dict[str, Any]
                  ) -> tuple[dict[str, Any], FrameEncoder]:
    """The encoder config (file and ``--config`` joined) and the encoder holding the
    file's weights (a head-only file: its pooling on the ``--config`` trunk)."""
    user = dict(config.get("encoder") or {})
    if parts.is_cct:  # CAT/FC: the authors' raw seq-pooled vectors; SeqVLAD: tokens
        head = ({"output": "seqpool", "normalize": False} if parts.aggregation in ("cat", "fc")
                else {"output": "tokens"})
        return cct_encoder_from_release(parts.encoder, {**user, **head})
    if parts.encoder:
        arch = cnn_trunk(parts.encoder)  # trained from layer3 on (--freeze_layer layer3)
        user = {**arch, "image_size": (480, 640), "freeze": FREEZE[arch["name"]], **user}
    elif not user:
        raise ValueError("the file holds no encoder.* keys (a head-only file); give --config "
                         "with encoder: {...} making the frame features it was trained on")
    pooling, state = cnn_pooling(parts)
    user.update(pooling)
    state.update({f"backbone.{k}": v for k, v in parts.encoder.items()})
    kw = {"pretrained": not parts.encoder} | {k: v for k, v in user.items() if k != "name"}
    encoder = create_encoder(user["name"], **kw)
    if parts.encoder:
        encoder.load_state_dict(state, strict=True)
    else:
        missing = set(state) - set(encoder.state_dict())
        if missing:
            raise ValueError(f"the --config encoder has no {sorted(missing)[:4]}")
        encoder.load_state_dict(state, strict=False)
    return user, encoder


def sequence_head(parts: TVGNetRelease, frame_dim: int, config: dict[str, Any]
                  ) -> tuple[dict[str, Any], Tensors]:
    """The aggregator config and our tensors for it."""
    user = {k: v for k, v in (config.get("aggregator") or {}).items() if k != "name"}
    if parts.aggregation == "seqvlad":
        vlad = vlad_from_state(parts.aggregator)
        if vlad.init != "vladv1":
            raise ValueError("a TVGNet SeqVLAD has no assignment bias")
        return ({"name": "seqvlad", "clusters": vlad.clusters},
                vlad_state(vlad, "vlad."))
    if parts.aggregation == "fc":
        weight, bias = parts.aggregator["1.weight"], parts.aggregator["1.bias"]
        length, rest = divmod(weight.shape[1], frame_dim)
        if rest or not length:
            raise ValueError(f"the FC takes {weight.shape[1]} inputs, not a multiple of the "
                             f"{frame_dim}-d frame vectors")
        return ({"name": "fc", "length": length, "out_dim": weight.shape[0], "normalize": False},
                {"fc.weight": weight, "fc.bias": bias})
    if "length" not in user:
        raise ValueError("a TVGNet with CAT stores no window length; give --config with "
                         "aggregator: {length: L} (the authors' --seq_length)")
    return {"name": "cat", "length": int(user["length"]), "normalize": False}, {}


def build(parts: TVGNetRelease, config: dict[str, Any]) -> SequenceModel:
    """The seqvpr model of a parsed TVGNet file (``--config`` fills what it lacks)."""
    encoder_config, encoder = frame_encoder(parts, config)
    aggregator, aggregator_state = sequence_head(parts, encoder.dim, config)
    model = SequenceModel({**config, "encoder": encoder_config, "aggregator": aggregator},
                          encoder=encoder)
    model.aggregator.load_state_dict(aggregator_state, strict=True)
    return model


@register_converter("vg-transformers")
def convert_vg_transformers(release: Any, config: dict[str, Any]) -> SequenceModel:
    return build(TVGNetRelease.parse(release), config)


# ---- reference fixtures (``gen_vgt``): head-only files fed encoder outputs, and
# ---- full TVGNets fed frames.

def _head_only_outputs(fixture, parts: TVGNetRelease) -> dict[str, Any]:
    """The file's pooling and sequence head on the fixture's encoder outputs (the
    authors replaced the encoder by an identity; so does this, with an empty trunk)."""
    features = fixture.io["features"]
    length = int(fixture.config["L"])
    config: dict[str, Any] = {"aggregator": {"length": length}}
    if features.ndim == 4:  # CNN maps [B*L, C, H, W]
        pool, state = cnn_pooling(parts)
        trunk = CNNEncoder("identity", nn.Sequential(), features.shape[1],
                           tuple(features.shape[2:]), tuple(features.shape[2:]),
                           pool.pop("pool"), None, 0, **pool).eval()
        trunk.load_state_dict(state, strict=True)
        frames = trunk(features)
    else:  # tokens [B*L, N, C]
        frames = features
    name_and_kw, state = sequence_head(parts, frames.shape[-1], config)
    factory = AGGREGATORS[name_and_kw["name"]]
    facts = {"in_dim": frames.shape[-1]} if "in_dim" in signature(factory).parameters else {}
    aggregate = create_aggregator(**name_and_kw, **facts).eval()
    aggregate.load_state_dict(state, strict=True)
    out = {"descriptor": aggregate(frames.unflatten(0, (-1, length))), "pooled_frames": frames}
    if parts.aggregation == "seqvlad" and "init_centroids" in fixture.io:
        out.update(init_checks(fixture, parts.aggregator, "vladv1"))
    return out


def _clips(features: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """Per-frame [U, ...] -> the clips' [B, L, ...] ((b s) order, as the authors)."""
    return features[clips.flatten()].unflatten(0, tuple(clips.shape))


def _full_outputs(fixture, parts: TVGNetRelease) -> dict[str, Any]:
    clips = fixture.io["clip_index"]
    size = list(fixture.io["frames_u8"].shape[-2:])  # stored at the model's input size
    config = {"aggregator": {"length": clips.shape[1]},
              "encoder": {"image_size": size} if parts.is_cct else {}}
    model = build(parts, config).eval()
    x = model.preprocess(fixture.frames_nhwc())
    out = {"descriptor": model(_clips(x, clips))}
    encoder = model.encoder
    if encoder.grid is None and parts.is_cct:  # a CAT/FC file: the same CCT's tokens
        encoder = cct_encoder_from_release(parts.encoder, {**config["encoder"],
                                                           "output": "tokens"})[1].eval()
    for name in fixture.atol:
        rows = re.fullmatch(r"encoder_tokens_frame(\d+)_rows(\d+)_(\d+)", name)
        if rows and encoder.grid is not None:
            frame, first, last = map(int, rows.groups())
            cols = encoder.grid[1]
            tokens = encoder(x[frame:frame + 1])[:, encoder.prefix_tokens:]
            out[name] = tokens[:, first * cols:(last + 1) * cols]
    if {"seqpool_unique_frames", "cat_descriptor"} & set(fixture.atol):
        # The authors' CAT TVGNet on the same encoder weights: seq-pooled raw frames.
        cat = build(dataclasses.replace(parts, aggregator={}), config).eval()
        pooled = cat.encode(x)
        out["seqpool_unique_frames"] = pooled
        out["cat_descriptor"] = cat.aggregate(_clips(pooled, clips))
    return out


@register_fixture("gen_vgt", verifies=("cct384", "seqvlad", "cat", "fc", "pool=gem"))
def run_fixture(fixture) -> dict[str, Any]:
    parts = TVGNetRelease.parse(fixture.release())
    if "features" in fixture.io:
        return _head_only_outputs(fixture, parts)
    return _full_outputs(fixture, parts)
