"""Choose the SeqSLAM matcher's contrast radius on Nordland frames 1-1600; report 1601-2400.

`seqvpr eval --seqslam` runs `seqvpr_core.eval.seqslam.seqslam_rank` on the
model's own frame features. This scores it the same way (winter queries against
a summer map, L = 10 windows, Recall@1 under the current rule, tolerance 1
frame) on two encoders' features: the `pixels` default and the EfficientNet-Lite0
2x4 grid. The contrast-enhancement radius with the best mean Recall@1 over both
on frames 1-1600 becomes the default; the velocities stay OpenSeqSLAM's
0.8..1.2 (Nordland's seasons are frame-aligned, so v = 1 alone would win here
and fail any robot that changes speed; its numbers are printed for reference).
Frames 1601-2400 take no part in the choice.

    python benchmarks/seqslam_defaults.py [--threads 1]
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import LITE0, cached, encode_season, parser, setup

from seqvpr_core.eval import GroundTruth, recall_at_k, window_positives
from seqvpr_core.eval.seqslam import SEQSLAM_PARAMETERS, seqslam_rank
from seqvpr_core.models import SequenceModel

TUNE, TEST = (0, 1600), (1600, 2400)
LENGTH = 10
OPENSEQSLAM_V = (0.8, 0.9, 1.0, 1.1, 1.2)
RADII = (None, 2, 5, 10, 20, 50)  # None: standardise over the whole map
ENCODERS = {"pixels": {"name": "pixels"}, "lite0 2x4 grid": LITE0}


def features(label: str, enc: dict) -> dict[str, np.ndarray]:
    model = SequenceModel({"encoder": enc, "aggregator": "none"}).eval()
    key = "seqslam_" + label.replace(" ", "_")
    return {s: cached(f"{key}_{s}", lambda s=s: encode_season(model, s))
            for s in ("summer", "winter")}


def recall_at_1(feats: dict[str, np.ndarray], frames: tuple[int, int], **kw) -> dict:
    a, b = frames
    q, db = (torch.from_numpy(feats[s][a:b]) for s in ("winter", "summer"))
    starts = np.arange(b - a - LENGTH + 1)
    spans = np.stack([starts, starts + LENGTH - 1], 1)
    ids, _ = seqslam_rank(q, db, spans, spans, 1, **kw)
    out = {}
    for rule in ("current", "seq2seq"):
        pos = window_positives(spans, spans, b - a, GroundTruth(tolerance=1, rule=rule))
        out[rule] = recall_at_k(ids, pos, (1,))[1]
    return out


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    setup(args.threads)
    t0 = time.perf_counter()
    feats = {label: features(label, enc) for label, enc in ENCODERS.items()}
    print(f"tuning on frames {TUNE[0] + 1}-{TUNE[1]}: current-rule Recall@1, L={LENGTH}, "
          f"velocities {OPENSEQSLAM_V}")
    scores = {}
    for radius in RADII:
        r = {label: recall_at_1(f, TUNE, velocities=OPENSEQSLAM_V, radius=radius)["current"]
             for label, f in feats.items()}
        scores[radius] = float(np.mean(list(r.values())))
        print(f"  radius {radius!s:>5}: " + "  ".join(f"{k} {v:.3f}" for k, v in r.items())
              + f"  mean {scores[radius]:.3f}", flush=True)
    best = max(RADII, key=lambda r: scores[r])
    print(f"chosen radius: {best} (default now {SEQSLAM_PARAMETERS['contrast_radius']['value']})")
    print(f"\nframes {TEST[0] + 1}-{TEST[1]} (not used for the choice), Recall@1 current / "
          "seq2seq:\n")
    print("| SeqSLAM setting | " + " | ".join(ENCODERS) + " |")
    print("|---|" + "---|" * len(ENCODERS))
    rows = {f"chosen: radius {best}, v 0.8..1.2": dict(radius=best, velocities=OPENSEQSLAM_V),
            "OpenSeqSLAM: radius 5 (R = 10), v 0.8..1.2": dict(radius=5,
                                                                velocities=OPENSEQSLAM_V),
            "before: radius 10, v 0.8..1.2": dict(radius=10, velocities=OPENSEQSLAM_V),
            f"reference: radius {best}, v = 1 only": dict(radius=best, velocities=(1.0,))}
    for label, kw in rows.items():
        cells = []
        for f in feats.values():
            r = recall_at_1(f, TEST, **kw)
            cells.append(f"{r['current']:.3f} / {r['seq2seq']:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
