"""On-time recall (Adapt-STformer protocol) next to plain Recall@K.

    python benchmarks/ontime.py [--threads 1] [--frames 2400] [--fps 10 30]

EfficientNet-Lite0 + SeqGeM, 10-frame windows. The map is the Nordland summer
traversal; the winter traversal is replayed one frame at a time through the
full streaming path (preprocess, encode, ring, aggregate, search, gate), each
frame timed; a FIFO at each frame rate decides which answers were ready
before the next frame arrived.
"""

from __future__ import annotations

import numpy as np
from _common import (
    LITE0_SEQGEM,
    cached,
    encode_season,
    nordland_frames,
    parser,
    positives,
    report_load,
    setup,
)

LENGTH = 10


def main() -> None:
    p = parser(__doc__, device=True)
    p.add_argument("--frames", type=int, default=2400, help="winter frames replayed")
    p.add_argument("--fps", type=float, nargs="+", default=[10.0, 30.0])
    args = p.parse_args()
    setup(args.threads, args.device)
    import torch

    from seqvpr_core.eval.evaluate import ranked_ids
    from seqvpr_core.eval.ontime import on_time_recall, replay_timed
    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig

    model = build_model(LITE0_SEQGEM, device=args.device, half=args.half,
                        runtime=args.runtime)
    window = WindowConfig.fixed(LENGTH)
    feats = cached("lite0_summer", lambda: encode_season(model, "summer"))
    place_map = PlaceMap(model.descriptor_dim, model={"fingerprint": model.fingerprint()})
    mapper = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    mapper.push_features(torch.from_numpy(feats), [FrameInfo(i, i) for i in range(len(feats))])
    frames = nordland_frames("winter", args.frames)
    infos = [FrameInfo(i, int(i * 1e8), source="winter") for i in range(len(frames))]
    loc = StreamingLocalizer(model, place_map, LocalizerConfig("localize", window, top_k=5))
    replay = replay_timed(loc, frames, infos)
    ranked = ranked_ids(replay.results, 5)
    pos = positives(len(ranked), len(place_map), LENGTH)
    ms = 1000 * replay.service_s
    print(f"map {len(place_map)} summer windows; {len(frames)} winter frames, "
          f"{len(ranked)} query windows; ms/frame median {np.median(ms):.2f}, "
          f"p95 {np.quantile(ms, 0.95):.2f}; ground truth seq2seq, tolerance 1 frame")
    for fps in args.fps:
        r = on_time_recall(ranked, pos, replay.window_end, replay.service_s, fps, ks=(1, 5))
        print(f"{fps:5.1f} Hz: Recall@1 {100 * r.recall[1]:.2f}  on-time Recall@1 "
              f"{100 * r.on_time_recall[1]:.2f} | Recall@5 {100 * r.recall[5]:.2f}  on-time "
              f"Recall@5 {100 * r.on_time_recall[5]:.2f} | on time {100 * r.on_time_fraction:.1f}%"
              f", max queue {r.max_queue}, mean latency {r.mean_latency_ms:.1f} ms")
    report_load()


if __name__ == "__main__":
    main()
