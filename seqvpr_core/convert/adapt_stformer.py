"""Adapt-STformer releases (ai4ce/Adapt-STFormer ``checkpoints/checkpoint.pth.tar``,
``model_best.pth.tar``).

``{epoch, state_dict, recalls, best_score, optimizer, parallel}``; the model is
DataParallel's ``Bev_RGB_Fusion`` (keys from ``module.``): ``encoder.*`` (a CCT),
``detr.{query_offset, reference_points, spatial_shapes, level_start_index}``,
``detr.spatial_cross_attention.{normalizer, sampling_offsets, attention_weights,
value_proj, output_proj}.*``, ``detr.cross_attn_norm.*``, ``seqgem.p`` (built,
unused), ``seqgem_modified.p`` (used) and ``aggregator.{conv.weight, centroids}``
(SeqVLAD). The authors load it with ``strict=False``; this converter is strict.

Not stored: the heads (the authors' ``get_model`` fixes 8) and how
``sampling_offsets`` splits into levels x points (``heads * levels * points * 2``
outputs). Unless ``--config`` names ``levels`` / ``points``, the points are the
authors' default 8 (every script of theirs uses ``--k_points 8``) and the levels
the rest: 128 outputs are 1 level of 8, 256 are their default 2 levels of 8.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..models import SequenceModel
from . import register_converter, register_fixture
from .cct import cct_encoder_from_release
from .netvlad import load_seqvlad
from .release import require, strip_prefix, unprefixed

SCA = r"detr\.spatial_cross_attention\."
KEYS = (r"detr\.query_offset", r"detr\.reference_points", r"detr\.spatial_shapes",
        r"detr\.level_start_index", SCA + r"normalizer",
        *(SCA + rf"{m}\.(weight|bias)" for m in ("sampling_offsets", "attention_weights",
                                                  "value_proj", "output_proj")),
        r"detr\.cross_attn_norm\.(weight|bias)", r"seqgem_modified\.p",
        r"aggregator\.(centroids|conv\.weight)")
ALLOWED = (r"encoder\..*", r"seqgem\.p")
AGGREGATOR_OPTIONS = {"heads", "levels", "points", "frame_reshape"}
AUTHORS_POINTS = 8
# A fixture's config names the authors' options (``--num_levels``, ``--k_points``; the
# heads are Bev_RGB_Fusion's argument): none of them is stored, and heads x levels x
# points only fixes their product.
FIXTURE_OPTIONS = {"num_levels": "levels", "k_points": "points", "heads": "heads"}


def _aggregator_config(state: dict[str, torch.Tensor], config: dict[str, Any]
                       ) -> dict[str, Any]:
    if unknown := sorted(set(config) - AGGREGATOR_OPTIONS - {"name"}):
        raise ValueError(f"aggregator options {unknown} do not apply to a converted "
                         f"Adapt-STformer; known: {sorted(AGGREGATOR_OPTIONS)}")
    if bad := {k: config[k] for k in ("heads", "levels", "points")
               if k in config and not (isinstance(config[k], int) and config[k] >= 1)}:
        raise ValueError(f"aggregator options {bad} must be integers >= 1")
    heads = config.get("heads", 8)
    per_head, rest = divmod(state["detr.spatial_cross_attention.attention_weights.weight"]
                            .shape[0], heads)
    if rest:
        raise ValueError(f"attention_weights has {per_head * heads + rest} outputs, not a "
                         f"multiple of {heads} heads (give aggregator: {{heads: H}})")
    levels, points = config.get("levels"), config.get("points")
    if points is None:
        points = (per_head // levels if levels
                  else AUTHORS_POINTS if per_head % AUTHORS_POINTS == 0 else per_head)
    levels = levels or per_head // points
    if levels * points != per_head:
        raise ValueError(f"attention_weights has {heads} heads x {per_head} samples, not "
                         f"{levels} levels x {points} points")
    return {"name": "adapt_stformer", "heads": heads, "levels": levels, "points": points,
            "clusters": state["aggregator.centroids"].shape[0],
            "p": float(state["seqgem_modified.p"].reshape(-1)[0]),
            "frame_reshape": config.get("frame_reshape", "view")}


@register_converter("adapt-stformer")
def adapt_stformer_from_release(release: Any, config: dict[str, Any]) -> SequenceModel:
    state = unprefixed(release)
    require(state, KEYS, "Adapt-STformer (Bev_RGB_Fusion with CCT, SeqGeM and SeqVLAD)",
            ALLOWED)
    enc_cfg, encoder = cct_encoder_from_release(
        strip_prefix(state, "encoder."), {**(config.get("encoder") or {}), "output": "tokens"})
    aggregator = _aggregator_config(state, config.get("aggregator") or {})
    model = SequenceModel({**config, "encoder": enc_cfg, "aggregator": aggregator},
                          encoder=encoder)
    agg = model.aggregator
    detr = strip_prefix(state, "detr.")
    grid = tuple(int(s) for s in detr["spatial_shapes"].reshape(-1))
    if grid != agg.grid or detr["level_start_index"].reshape(-1).tolist() != [0]:
        raise ValueError(f"the release's value map is {detr['spatial_shapes'].tolist()} "
                         f"(level starts {detr['level_start_index'].tolist()}); the encoder "
                         f"gives one {agg.grid[0]}x{agg.grid[1]} map")
    sca = strip_prefix(detr, "spatial_cross_attention.")
    attn = {k: v for k, v in sca.items() if k != "normalizer"}
    attn["normalizer"] = sca["normalizer"].reshape(-1)
    attn["reference_points"] = detr["reference_points"].reshape(-1, 2)
    agg.cross_attention.load_state_dict(attn)
    agg.cross_attn_norm.load_state_dict(strip_prefix(detr, "cross_attn_norm."))
    with torch.no_grad():
        agg.query_offset.copy_(detr["query_offset"].reshape(agg.query_offset.shape))
        agg.p.copy_(state["seqgem_modified.p"].reshape(()))
    load_seqvlad(agg.vlad, strip_prefix(state, "aggregator."))
    return model.eval()


@register_fixture("gen_adapt", verifies=("cct384", "adapt_stformer"))
def run_fixture(fixture) -> dict[str, torch.Tensor]:
    """One converted model at every window length of the fixture: ``descriptor_L{n}``
    on ``clip_index_L{n}``, and for a length n the recurrent states
    (``L{n}_detr_states_token_mean``, ``L{n}_detr_states_clip{c}_last_frame_row{r}``
    or ``..._frame{f}_row{r}``) and ``L{n}_seqgem_token_mean``."""
    cfg = fixture.config
    options = {k: cfg[f] for f, k in FIXTURE_OPTIONS.items() if f in cfg}
    frames = fixture.frames_nhwc()
    # Stored at the model's input size: the authors' CCT runs any size whose token grid
    # its position table fits unresized, so ours is built at that size too.
    model = adapt_stformer_from_release(fixture.release(), {
        "aggregator": options, "encoder": {"image_size": list(frames.shape[1:3])}})
    agg = model.aggregator
    with torch.inference_mode():
        feats = model.encode_frames(frames)
        outputs, states, pooled = {}, {}, {}
        for key in fixture.io:
            if m := re.fullmatch(r"clip_index_L(\d+)", key):
                n, clip = int(m.group(1)), feats[fixture.io[key]]
                outputs[f"descriptor_L{n}"] = model.aggregate(clip)
                states[n], pooled[n] = agg.recurrent_states(clip), agg.pooled(clip)
    for name in fixture.atol:
        if m := re.fullmatch(r"L(\d+)_detr_states_token_mean", name):
            outputs[name] = states[int(m.group(1))].mean(2)
        elif m := re.fullmatch(r"L(\d+)_seqgem_token_mean", name):
            outputs[name] = pooled[int(m.group(1))].mean(1)
        elif m := re.fullmatch(r"L(\d+)_detr_states_clip(\d+)_(last_frame|frame(\d+))_row(\d+)",
                               name):
            s = states[int(m.group(1))][int(m.group(2))]  # [T, N, C]
            f = -1 if m.group(3) == "last_frame" else int(m.group(4))
            outputs[name] = s[f].unflatten(0, agg.grid)[int(m.group(5))]
    return outputs
