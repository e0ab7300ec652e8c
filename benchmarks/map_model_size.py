"""What carrying its model costs a map: the checkpoint (``model.pt``) beside the index.

    python benchmarks/map_model_size.py

For each model: the checkpoint a map writes, the bytes one window takes in an
exact (flat) index, and the map size (1,000 windows, about a kilometre at a frame
per metre) with and without the model. Weights are not needed to size a
checkpoint, so every model is built without them (random initialisation).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import ROOT, parser

MODELS = {
    "demo (Lite0 stage 5 grid + cat, L=10)": ROOT / "seqvpr_core" / "configs"
    / "nordland_lite0_cat.yaml",
    "pixels+cat (L=10)": {"encoder": "pixels", "aggregator": {"name": "cat", "length": 10}},
    "efficientnet_lite0+seqgem": {"encoder": "efficientnet_lite0", "aggregator": "seqgem"},
    "efficientnet_lite2+seqgem": {"encoder": "efficientnet_lite2", "aggregator": "seqgem"},
    "resnet18+seqgem": {"encoder": "resnet18", "aggregator": "seqgem"},
    "cct224+seqvlad": {"encoder": "cct224", "aggregator": "seqvlad"},
    "dinov2_vitb14 (CLS) + seqgem": {"encoder": {"name": "dinov2_vitb14", "output": "cls"},
                                     "aggregator": "seqgem"},
}
WINDOWS = 1000


def main() -> None:
    parser(__doc__).parse_args()
    import yaml

    from seqvpr_core.models import SequenceModel

    print(f"{'model':40s} {'model.pt':>10s} {'B/window':>9s} {'map, 1k windows':>16s} "
          f"{'with model':>11s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in MODELS.items():
            if isinstance(config, Path):
                config = yaml.safe_load(config.read_text())
            model = SequenceModel(config, pretrained=False)
            path = Path(tmp) / "model.pt"
            model.save(path)
            ckpt, per_window = path.stat().st_size, 4 * model.descriptor_dim
            index = WINDOWS * per_window
            print(f"{name:40s} {ckpt / 1e6:8.1f}MB {per_window:9d} {index / 1e6:14.1f}MB "
                  f"{100 * ckpt / index:+10.0f}%", flush=True)


if __name__ == "__main__":
    main()
