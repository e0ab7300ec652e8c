"""PCA in front of the map index: 24576-d SeqVLAD descriptors to 4096 and 512.

    python benchmarks/pca.py [--threads 1]

SeqVLAD with 16 clusters over EfficientNet-Lite0 (ImageNet) stage-6 features
pooled on a 2x4 grid (1536-d per frame): 16 x 1536 = 24576-d per 10-frame
window, clusters initialised by k-means on summer features. The map holds the
summer windows and those of the horizontally flipped summer frames (an
augmentation, so the PCA has more training descriptors than 4096 output
dims); the PCA is trained on the map's own entries (``PCA<d>,L2norm,Flat``).
Queries are the winter windows. Prints Recall@1/5, the loss versus the full
24576-d exact search, ms per query and bytes per entry.
"""

from __future__ import annotations

import time

import numpy as np
from _common import cached, encode_season, parser, positives, report_load, setup

LENGTH = 10
ENCODER = {"name": "efficientnet_lite0", "stage": 6, "pool_grid": (2, 4),
           "image_size": (64, 128)}


def descriptors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(summer, flipped summer, winter) window descriptors, each [2391, 24576]."""
    import torch
    from _common import window_descriptors

    from seqvpr_core.models import build_model

    model = build_model({"encoder": ENCODER, "aggregator": {"name": "seqvlad", "clusters": 16}})
    feats = {s: cached(f"lite0s6_{s}", lambda s=s: encode_season(model, s))
             for s in ("summer", "winter")}
    flipped = cached("lite0s6_summer_flipped", lambda: encode_flipped(model))
    torch.manual_seed(0)
    model.aggregator.init_from_features(torch.from_numpy(feats["summer"]))
    return tuple(window_descriptors(model, f, LENGTH)
                 for f in (feats["summer"], flipped, feats["winter"]))


def encode_flipped(model) -> np.ndarray:
    import torch
    from _common import nordland_frames

    frames = [np.ascontiguousarray(f[:, ::-1]) for f in nordland_frames("summer")]
    return torch.cat([model.encode_frames(frames[i:i + 64])
                      for i in range(0, len(frames), 64)]).float().numpy()


def main() -> None:
    args = parser(__doc__).parse_args()
    setup(args.threads)
    import faiss

    from seqvpr_core.eval import recall_at_k
    from seqvpr_core.maps import Keyframe, PlaceMap

    summer, flipped, winter = descriptors()
    xb = np.concatenate([summer, flipped])
    n = len(summer)
    pos = positives(len(winter), n, LENGTH)
    print(f"map {xb.shape} (summer + flipped summer windows), queries {winter.shape}")
    print(f"{'index':22s} {'train+add s':>11s} {'R@1':>6s} {'R@5':>6s} {'R@1 loss':>9s} "
          f"{'ms/query':>9s} {'B/entry':>8s} {'fixed MB':>9s}")
    full = None
    for spec in ("Flat", "PCA4096,L2norm,Flat", "PCA512,L2norm,Flat"):
        t0 = time.perf_counter()
        m = PlaceMap(xb.shape[1], index_spec=spec)
        m.add(xb, [Keyframe(0, 0, LENGTH, 0, LENGTH - 1)] * len(xb))
        m.train()
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, ids = m.search(winter, 5)
        ms = 1000 * (time.perf_counter() - t0) / len(winter)
        r = recall_at_k(ids % n, pos, (1, 5))
        full = full or r[1]
        # per entry: the stored codes; fixed: the PCA projection, whatever the map size
        per_entry = 4 * faiss.downcast_index(m.index).d if "PCA" not in spec else \
            4 * faiss.downcast_index(m.index.index).d
        fixed = len(faiss.serialize_index(m.searched_index)) - per_entry * len(m)
        print(f"{spec:22s} {build_s:11.1f} {100 * r[1]:6.2f} {100 * r[5]:6.2f} "
              f"{100 * (full - r[1]):9.2f} {ms:9.3f} {per_entry:8d} {fixed / 2**20:9.1f}",
              flush=True)
        del m
    report_load()


if __name__ == "__main__":
    main()
