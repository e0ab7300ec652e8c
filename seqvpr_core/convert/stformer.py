"""STformer releases (tiev-tongji/Spatio-Temporal-SeqVPR, ``checkpoints/ours/*.pth``).

A release is the bare state dict of the authors' ``Net`` (``evaluation.py``
loads it strictly): ``encoder.spatial.{tokenizer, classifier}.*`` (a CCT),
``encoder.temporal.{positional_emb, attention_pool, blocks.<i>, norm}.*`` (the
space-time branch; with relative positions each block has
``self_attn.rel_pos_{h,w,t}``) and ``aggregator.{conv.weight, centroids}``
(SeqVLAD). The depths come from the block keys, the window size, the frames the
space-time attention spans (the authors' fixed 5) and the heads from the
relative-position tables ([2k-1, C/heads] and [2T-1, C/heads]); the window length
L defaults to T, and ``--config`` may name a multiple (the authors' ``--seq_length
10``: the attention runs on each 5 consecutive frames, SeqVLAD pools all 10). The
stride (3) is not stored: ``--config`` may name another.
The temporal branch's ``positional_emb`` (with relative positions) and both
``attention_pool`` layers are stored but unused by the authors' forward.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..models import SequenceModel
from . import register_converter, register_fixture
from .cct import cct_encoder_from_release
from .netvlad import SEQVLAD_KEYS, load_seqvlad
from .release import only_under, require, strip_prefix, unprefixed

TEMPORAL_KEYS = (r"norm\.(weight|bias)", r"blocks\.0\.self_attn\.qkv\.weight")
TEMPORAL_ALLOWED = (r"positional_emb", r"attention_pool\.(weight|bias)",
                    r"blocks\.\d+\.(pre_norm|norm1|linear1|linear2)\.(weight|bias)",
                    r"blocks\.\d+\.self_attn\.(qkv\.weight|proj\.(weight|bias)|rel_pos_[hwt])")
AGGREGATOR_OPTIONS = {"stride", "length", "window", "heads", "temporal_frames"}


def _temporal_config(temporal: dict[str, torch.Tensor], config: dict[str, Any]
                     ) -> dict[str, Any]:
    require(temporal, TEMPORAL_KEYS, "STformer temporal branch", TEMPORAL_ALLOWED)
    if unknown := sorted(set(config) - AGGREGATOR_OPTIONS - {"name"}):
        raise ValueError(f"aggregator options {unknown} do not apply to a converted STformer; "
                         f"known: {sorted(AGGREGATOR_OPTIONS)}")
    layers = len({int(m.group(1)) for k in temporal if (m := re.match(r"blocks\.(\d+)\.", k))})
    dim = temporal["norm.weight"].shape[0]
    agg = {"name": "stformer", "temporal_layers": layers, "stride": config.get("stride", 3),
           "relative_positions": "blocks.0.self_attn.rel_pos_t" in temporal}
    if agg["relative_positions"]:
        rel_h, rel_t = (temporal[f"blocks.0.self_attn.rel_pos_{a}"] for a in "ht")
        stored = {"window": (rel_h.shape[0] + 1) // 2,
                  "temporal_frames": (rel_t.shape[0] + 1) // 2, "heads": dim // rel_h.shape[1]}
        if clash := {k: config[k] for k in stored if k in config and config[k] != stored[k]}:
            raise ValueError(f"aggregator options {clash} contradict the release's relative-"
                             f"position tables, which fix {stored}")
        agg |= stored
    else:
        agg |= {"window": config.get("window", 6),
                "temporal_frames": config.get("temporal_frames", 5),
                "heads": config.get("heads", 6)}
    agg["length"] = length = config.get("length", agg["temporal_frames"])
    if length % agg["temporal_frames"]:
        raise ValueError(f"aggregator length {length} is not a multiple of the "
                         f"{agg['temporal_frames']} frames the release's space-time attention "
                         "spans")
    return agg


@register_converter("stformer")
def stformer_from_release(release: Any, config: dict[str, Any]) -> SequenceModel:
    state = unprefixed(release)
    only_under(state, ("encoder.spatial.", "encoder.temporal.", "aggregator."), "STformer")
    spatial = strip_prefix(state, "encoder.spatial.")
    if any("rel_pos" in k for k in spatial):
        raise ValueError("this STformer was trained with --rel_pos_spatial (attention across "
                         "the frames in the spatial branch too), which seqvpr does not build")
    temporal = strip_prefix(state, "encoder.temporal.")
    enc_cfg, encoder = cct_encoder_from_release(
        spatial, {**(config.get("encoder") or {}), "output": "tokens+patches"})
    agg_state = strip_prefix(state, "aggregator.")
    require(agg_state, SEQVLAD_KEYS, "STformer SeqVLAD (aggregator.*)")
    agg_cfg = _temporal_config(temporal, config.get("aggregator") or {})
    agg_cfg["clusters"] = agg_state["centroids"].shape[0]
    model = SequenceModel({**config, "encoder": enc_cfg, "aggregator": agg_cfg}, encoder=encoder,
                          pretrained=False)  # every tensor comes from the release
    ignored = {"attention_pool.weight", "attention_pool.bias"}
    if agg_cfg["relative_positions"]:
        ignored.add("positional_emb")
    model.aggregator.temporal.load_state_dict(
        {k: v for k, v in temporal.items() if k not in ignored})
    load_seqvlad(model.aggregator.vlad, agg_state)
    return model.eval()


@register_fixture("gen_stformer", verifies=("cct384", "stformer"))
def run_fixture(fixture) -> dict[str, torch.Tensor]:
    """Branch outputs and the descriptor of a ``gen_stformer`` fixture: per-frame
    token means of both branches, ``temporal_clip{c}_frame{f}_rows{a}_{b}`` (grid
    rows a and b of one frame) and ``descriptor``, on ``clip_index``."""
    clips = fixture.io["clip_index"]
    size = list(fixture.io["frames_u8"].shape[-2:])  # stored at the model's input size
    model = stformer_from_release(fixture.release(), {"encoder": {"image_size": size},
                                                      "aggregator": {"length": clips.shape[1]}})
    with torch.inference_mode():
        feats = model.encode_frames(fixture.frames_nhwc())[clips]
        spatial, temporal = model.aggregator.branches(feats)
        outputs = {"spatial_token_mean": spatial.mean(2).flatten(0, 1),
                   "temporal_token_mean": temporal.mean(2).flatten(0, 1),
                   "descriptor": model.aggregate(feats)}
    grid = temporal.unflatten(2, model.aggregator.grid)  # [B, L, H, W, C]
    for name in fixture.atol:
        if m := re.fullmatch(r"temporal_clip(\d+)_frame(\d+)_rows(\d+)_(\d+)", name):
            c, f, a, b = map(int, m.groups())
            outputs[name] = grid[c, f, [a, b]]
    return outputs
