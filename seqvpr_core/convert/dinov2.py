"""DINOv2 (Oquab et al., TMLR 2024; facebookresearch/dinov2) backbone releases.

``dinov2_vit{s,b}14_pretrain.pth`` is the bare state dict the authors' hub loads
strictly: ``cls_token``, ``pos_embed`` [1, 1 + 37*37, C], ``mask_token``,
``patch_embed.proj.*``, ``blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}.*``, ``norm.*``. The width picks ViT-S (384) or ViT-B
(768); the number of blocks (``layers``) and the side of the position table
(``pos_grid``: 37 in the released files, a model built with ``img_size`` 518) are read
from the file. Register-token (``*_reg4``) and ViT-L/g (SwiGLU) releases are not
supported. The converted model is the backbone plus ``--config``'s head: by default
the CLS token (L2-normalised) and single-frame retrieval (``none``);
``encoder: {output: tokens}`` feeds a token aggregator (e.g. ``seqvlad``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from ..models import SequenceModel
from ..models.encoders.dinov2 import ARCHS, PATCH
from . import register_converter, register_fixture
from .release import require, unprefixed

KEYS = (r"cls_token", r"pos_embed", r"mask_token", r"patch_embed\.proj\.(weight|bias)",
        r"blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)",
        r"blocks\.\d+\.ls[12]\.gamma", r"norm\.(weight|bias)")
NAME_BY_WIDTH = {dim: name for name, (dim, _, _) in ARCHS.items()}


def encoder_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Our encoder name and ``layers`` for an official DINOv2 state dict."""
    if "register_tokens" in state:
        raise ValueError("DINOv2 releases with register tokens (*_reg4) are not supported")
    require(state, KEYS, "DINOv2 (dinov2_vit*14_pretrain.pth)")
    width = state["cls_token"].shape[-1]
    if width not in NAME_BY_WIDTH:
        raise ValueError(f"no DINOv2 ViT of width {width} here: {sorted(NAME_BY_WIDTH)} "
                         "(ViT-S/14, ViT-B/14)")
    depth = len({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})
    positions = state["pos_embed"].shape[1] - 1  # CLS entry, then a square patch grid
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f"pos_embed holds {positions} patch positions, not a square grid")
    return {"name": NAME_BY_WIDTH[width], "layers": depth, "pos_grid": side,
            "trainable_blocks": min(4, depth)}


@register_converter("dinov2")
def convert_dinov2(release: Any, config: dict[str, Any]) -> SequenceModel:
    state = unprefixed(release, ())
    encoder = {"output": "cls", **encoder_config(state), **dict(config.get("encoder") or {})}
    aggregator = config.get("aggregator")
    if not aggregator:
        if encoder["output"] != "cls":
            raise ValueError("DINOv2 tokens need a token aggregator: give --config with "
                             "aggregator: {name: seqvlad, ...}")
        aggregator = {"name": "none"}
    model = SequenceModel({**config, "encoder": encoder, "aggregator": aggregator},
                          pretrained=False)
    model.encoder.load_state_dict(state, strict=True)
    return model


@register_fixture("gen_dinov2", verifies=("dinov2_vits14",))
def run_fixture(fixture) -> dict[str, Any]:
    images = fixture.frames_nhwc("images_u8")
    size = tuple(images.shape[1:3])
    release = fixture.release()
    tokens_model = convert_dinov2(release, {"encoder": {"image_size": size, "output": "tokens"},
                                            "aggregator": {"name": "seqvlad", "clusters": 1}})
    cls_model = convert_dinov2(release, {"encoder": {"image_size": size, "normalize": False}})
    encoder = tokens_model.eval().encoder
    x = tokens_model.preprocess(images)
    tokens = encoder(x)
    rows, cols = size[0] // PATCH, size[1] // PATCH
    out = {"x_norm_clstoken": tokens[:, 0], "x_norm_patchtokens": tokens[:, 1:],
           "forward": cls_model.eval().encoder(x)}
    for name in fixture.atol:
        if re.fullmatch(r"pos_embed_interpolated_first_rows", name):
            kept = (fixture.meta["outputs"][name]["shape"][1] - 1) // cols
            out[name] = encoder.position_embedding(rows, cols)[:, :1 + kept * cols]
    return out
