"""CCT in the authors' releases: vg-transformers' TVGNet, STformer, Adapt-STformer.

All three build CCT-14/7x2 with the Compact-Transformers module names
(``tokenizer.conv_layers.{0,1}.0.weight``, ``classifier.positional_emb``,
``classifier.blocks.<i>.*``, ``classifier.norm.*``, ``classifier.attention_pool.*``),
truncated to ``trunc_te`` blocks: :func:`cct_encoder_from_release` reads the depth
from the block keys and the input size from the position table (24 x 24 tokens:
384 x 384 frames; 14 x 14: 224 x 224), so any depth and either size converts.
``image_size`` (S or [H, W]) names the frames the model was trained on: any size
with the table's grid (e.g. 380 x 372: 24 x 24 tokens, as the authors' code runs
it) keeps the table; another grid resizes it.
:mod:`.vg_transformers` (TVGNet), :mod:`.stformer` and :mod:`.adapt_stformer` call it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..models.encoders.cct import DEPTH, EMBED, CCTEncoder
from .release import require

CCT_KEYS = (r"tokenizer\.conv_layers\.0\.0\.weight", r"tokenizer\.conv_layers\.1\.0\.weight",
            r"classifier\.positional_emb", r"classifier\.norm\.(weight|bias)",
            r"classifier\.blocks\.0\.(pre_norm|norm1|linear1|linear2)\.(weight|bias)",
            r"classifier\.blocks\.0\.self_attn\.qkv\.weight",
            r"classifier\.blocks\.0\.self_attn\.proj\.(weight|bias)")
CCT_ALLOWED = (r"classifier\.blocks\.\d+\.(pre_norm|norm1|linear1|linear2)\.(weight|bias)",
               r"classifier\.blocks\.\d+\.self_attn\.(qkv\.weight|proj\.(weight|bias))",
               r"classifier\.attention_pool\.(weight|bias)", r"classifier\.fc\.(weight|bias)")
ENCODER_OPTIONS = {"output", "normalize", "freeze_layers", "image_size"}


def cct_encoder_from_release(state: Mapping[str, torch.Tensor], config: dict[str, Any]
                             ) -> tuple[dict[str, Any], CCTEncoder]:
    """(encoder config, the encoder with the weights) from a CCT state dict in the
    authors' layout (keys from ``tokenizer.`` / ``classifier.`` on). Depth and input
    size come from the shapes; ``config`` adds options (``output``, ``normalize``,
    ``freeze_layers``) and may name another ``image_size``, S or [H, W] (another token
    grid resizes the table)."""
    require(state, CCT_KEYS, "CCT-14/7x2", CCT_ALLOWED)
    pos = state["classifier.positional_emb"]
    if pos.shape[-1] != EMBED:
        raise ValueError(f"classifier.positional_emb is {tuple(pos.shape)}: not a CCT-14 "
                         f"({EMBED}-d tokens)")
    side = int(pos.shape[1] ** 0.5)
    if side * side != pos.shape[1]:
        raise ValueError(f"classifier.positional_emb holds {pos.shape[1]} tokens, not a "
                         "square grid")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"classifier\.blocks\.(\d+)\.", k))}
    if blocks != set(range(len(blocks))) or len(blocks) > DEPTH:
        raise ValueError(f"CCT blocks {sorted(blocks)} are not 0..n-1 with n <= {DEPTH}")
    options = {k: v for k, v in config.items() if k != "name"}
    if unknown := sorted(set(options) - ENCODER_OPTIONS):
        raise ValueError(f"encoder options {unknown} do not apply to a converted CCT; "
                         f"known: {sorted(ENCODER_OPTIONS)}")
    name = "cct224" if side == 14 else "cct384"
    size = options.pop("image_size", 16 * side)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"encoder image_size must be S or [H, W] in pixels, got {size}")
    encoder = CCTEncoder(name, size, len(blocks), **options)
    encoder.load_state(dict(state), "the CCT of the release")
    enc_cfg = {"name": name, "layers": len(blocks), **options}
    default = {"cct224": 224, "cct384": 384}[name]
    if size != (default, default):
        enc_cfg["image_size"] = size[0] if size[0] == size[1] else list(size)
    return enc_cfg, encoder
