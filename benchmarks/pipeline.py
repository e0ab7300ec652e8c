"""Pipeline overhead: the full streaming path per frame vs the bare encoder forward.

    python benchmarks/pipeline.py [--threads 1] [--repeat 30] [--entries 10000]

Full path: one ``StreamingLocalizer.step`` in localize mode (preprocess the
uint8 frame, encode, ring, aggregate the 10-frame window, search a map of
``--entries`` real descriptors with the index ``auto`` picks, gate). Bare:
``model.encode`` on the same frame already preprocessed. Target: <= 1.25x.
"""

from __future__ import annotations

import numpy as np
import torch
from _common import (
    LITE0_SEQGEM,
    cached,
    encode_season,
    interleaved_ms,
    nordland_frames,
    parser,
    report_load,
    setup,
    sync,
    window_descriptors,
)

LENGTH = 10


def main() -> None:
    p = parser(__doc__, device=True)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--entries", type=int, default=10_000)
    args = p.parse_args()
    setup(args.threads, args.device)
    from maps import noisy_map

    from seqvpr_core.maps import Keyframe, PlaceMap
    from seqvpr_core.maps.indexes import index_spec
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import LocalizerConfig, StreamingLocalizer, WindowConfig

    model = build_model(LITE0_SEQGEM, device=args.device, half=args.half,
                        runtime=args.runtime)
    feats = cached("lite0_summer", lambda: encode_season(model, "summer"))
    xb = noisy_map(window_descriptors(model, feats, LENGTH), args.entries)
    spec = index_spec("auto", model.descriptor_dim, args.entries)
    place_map = PlaceMap(model.descriptor_dim, model={"fingerprint": model.fingerprint()},
                         index_spec=spec)
    place_map.add(xb, [Keyframe(0, 0, LENGTH, 0, LENGTH - 1)] * len(xb))
    place_map.train()  # as `seqvpr build-map` leaves it (trained when saved)
    loc = StreamingLocalizer(model, place_map,
                             LocalizerConfig("localize", WindowConfig.fixed(LENGTH)))
    frames = nordland_frames("winter", 64)
    loc.feed(frames[:LENGTH], list(range(LENGTH)))
    pre = [model.preprocess(f[None]) for f in frames]
    state = {"i": LENGTH}

    def full() -> None:
        i = state["i"]
        assert loc.step(frames[i % len(frames)], i) is not None
        state["i"] = i + 1

    def bare() -> None:
        with torch.inference_mode():
            model.encode(pre[state["i"] % len(frames)])
        sync(model.device)

    ms = interleaved_ms({"full": full, "bare": bare}, args.repeat)
    print(f"map: {len(place_map)} entries, {model.descriptor_dim}-d, index {spec}")
    print(f"full streaming path {ms['full']:.2f} ms/frame, bare encoder {ms['bare']:.2f} "
          f"ms/frame, ratio {ms['full'] / ms['bare']:.3f} (target <= 1.25: "
          f"{'ok' if ms['full'] / ms['bare'] <= 1.25 else 'MISSED'})")
    report_load()


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
