"""Small configurations of every registered model, so the zoo tests stay fast on a CPU.

Every registered encoder and aggregator must have an entry here (a test checks
it), so a new model is picked up by the parametrized tests automatically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqvpr_core.data.images import read_image

NORDLAND = Path(__file__).resolve().parents[2] / "shared" / "data" / "nordland64"
WINDOW = 3  # the length fixed-length aggregators are built for

SMALL_ENCODERS: dict[str, dict] = {
    "pixels": {},
    "efficientnet_lite0": {"image_size": (64, 64), "stage": 3},
    "efficientnet_lite2": {"image_size": (64, 64), "stage": 3},
    "resnet18": {"image_size": (64, 64)},
    "resnet50": {"image_size": (64, 64), "layer3_crop": True, "pool": "none"},
    "vgg16": {"image_size": (64, 64), "fc_dim": 64},
    "cct224": {"image_size": 64, "layers": 2},
    "cct384": {"image_size": 64, "layers": 1, "output": "seqpool"},
    "dinov2_vits14": {"image_size": (28, 56), "trainable_blocks": 2},
    "dinov2_vitb14": {"image_size": (28, 28), "trainable_blocks": 1},
    "vit": {"image_size": 32, "layers": 2, "heads": 2, "hidden_dim": 32, "mlp_dim": 64},
    "rgb": {"image_size": (16, 16)},
}

SMALL_AGGREGATORS: dict[str, dict] = {
    "cat": {"length": WINDOW},
    "avg": {},
    "max": {},
    "none": {},
    "seqgem": {},
    "fc": {"length": WINDOW, "out_dim": 32},
    "seqnet": {"out_dim": 64, "kernel": 3},
    "mixer": {"length": WINDOW, "depth": 2, "out_rows": 2, "out_cols": 32},
    "seqvlad": {"clusters": 4},
    "stformer": {"length": WINDOW, "heads": 4, "clusters": 4, "temporal_layers": 1,
                 "window": 2, "stride": 1},  # 2x2 windows overlap on the 4x4 grid
    "adapt_stformer": {"heads": 8, "levels": 1, "points": 4, "clusters": 4},  # all get gradients
    "timesformer": {"frames": WINDOW, "depth": 2, "heads": 4},
    "r2plus1d": {"layers": 2},
    "delta": {},
}

# Aggregators that read one encoder's particular per-frame output: that encoder and
# the options (beyond its small config) it needs for them. Early fusion runs on
# patch embeddings or pixels; STformer reads the CCT's final and tokenizer tokens.
ENCODER_FOR: dict[str, tuple[str, dict]] = {
    "timesformer": ("vit", {"output": "patches"}),
    "r2plus1d": ("rgb", {}),
    "stformer": ("cct224", {"output": "tokens+patches"}),
}

# A compatible small encoder for each kind of aggregator input.
VECTOR_ENCODER = "resnet18"
TOKEN_ENCODER = "cct224"


def config(encoder: str, aggregator: str) -> dict:
    paired, options = ENCODER_FOR.get(aggregator, (None, {}))
    options = options if encoder == paired else {}
    return {"encoder": {"name": encoder, **SMALL_ENCODERS[encoder], **options},
            "aggregator": {"name": aggregator, **SMALL_AGGREGATORS[aggregator]}}


def nordland_frames(season: str, start: int, count: int) -> list[np.ndarray]:
    """Real 64x32 Nordland frames, ``images-00010.png`` is index 0."""
    return [read_image(NORDLAND / season / f"images-{(start + i + 1) * 10:05d}.png")
            for i in range(count)]
