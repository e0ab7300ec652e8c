"""Loop-closure gate: precision and recall on real Nordland streams, threshold x consistency.

    python benchmarks/loop_gate.py [--threads 1] [--plot docs/loop_gate_pr.png]

The encoder is the Nordland configuration the node runs with
(``seqvpr_core/configs/nordland_lite0_cat.yaml``: EfficientNet-Lite0 grid features,
10-frame ``cat`` windows, stride 1). Streams, stamps at 10 Hz:

- revisit (slam mode, 30 s exclusion): a stretch of 600 frames driven twice, in
  the same season (the issue's summer 1-600; winter 1201-1800) and in summer then
  winter (a revisit under appearance change). A closure in the first pass is false.
- cross-season (localize mode): a whole 2400-frame season against a map of the other.

Each stream is run once through ``StreamingLocalizer`` (the node's path) and its
matches are replayed through :class:`LoopClosureGate` for every setting. A closure
is true when the matched map window ends within 1 frame of the query window's
newest frame (the seasons are frame-aligned); recall is true closures over the
second pass's windows (every window whose newest frame is in it, including the first
WINDOW - 2, which no map window can match yet: a revisit's recall tops out at 592/600)
and over every cross-season window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from _common import ROOT, cached, encode_season, parser, report_load, setup

CONFIG = ROOT / "seqvpr_core" / "configs" / "nordland_lite0_cat.yaml"
WINDOW = 10
THRESHOLDS = (-math.inf, 0.8, 0.85, 0.9, 0.95)  # -inf: no threshold (the default)
CONSISTENCY = (1, 3, 5, 8, 10, 12, 15, 20)
TOLERANCES = (0, 1, 2, 3)
PERIOD_NS = 100_000_000


@dataclass
class Stream:
    name: str
    windows: list  # (query frame index, matches best first, has a true match)


def _run(model, features, mode: str, route: list[tuple[str, int]], prior=None) -> list:
    """The :class:`WindowResult` of every window of ``route`` (season, frame index),
    and the map (``prior``, or the one the stream built)."""
    import torch

    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig

    window = WindowConfig.fixed(WINDOW)
    place_map = prior if prior is not None else PlaceMap.for_model(model, window, str(CONFIG))
    loc = StreamingLocalizer(model, place_map, LocalizerConfig(mode, window, top_k=5,
                                                               exclude_recent_s=30.0))
    feats = torch.from_numpy(np.stack([features[s][i] for s, i in route]))
    infos = [FrameInfo(i, n * PERIOD_NS) for n, (_, i) in enumerate(route)]
    return loc.push_features(feats, infos), place_map


def streams(model, features) -> list[Stream]:
    out = []
    for first, second, start in (("summer", "summer", 0), ("winter", "winter", 1200),
                                 ("summer", "winter", 0)):
        route = [(first, i) for i in range(start, start + 600)]
        route += [(second, i) for i in range(start, start + 600)]
        results, _ = _run(model, features, "slam", route)
        # a window whose newest frame is in the second pass counts as having a true match
        # (the first WINDOW - 2 of them cannot: no map window ends within 1 frame of theirs)
        out.append(Stream(f"{first[0].upper()}{start + 1}-{start + 600}+{second[0].upper()}",
                          [(r.last.index, r.matches, n >= 600 - WINDOW + 1)
                           for n, r in enumerate(results)]))
    for query, db in (("winter", "summer"), ("summer", "winter")):
        _, place_map = _run(model, features, "mapping", [(db, i) for i in range(2400)])
        results, _ = _run(model, features, "localize", [(query, i) for i in range(2400)],
                          prior=place_map)
        out.append(Stream(f"{query[0].upper()} vs {db[0].upper()} map",
                          [(r.last.index, r.matches, True) for r in results]))
    return out


def score(stream: Stream, threshold: float, consistency: int, tolerance: int) -> tuple:
    """(closures, false closures, recall) of one gate setting on one stream."""
    from seqvpr_core.stream import GateConfig, LoopClosureGate

    gate = LoopClosureGate(GateConfig(threshold, consistency, tolerance))
    closures = false = true = 0
    for n, (index, matches, _) in enumerate(stream.windows):
        lc = gate.update(matches, n * PERIOD_NS, index)
        if lc is None:
            continue
        closures += 1
        if abs(lc.match.keyframe.last_index - index) <= 1:
            true += 1
        else:
            false += 1
    positives = sum(has_true for *_, has_true in stream.windows)
    return closures, false, true / positives


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--plot", help="write the precision-recall curves to this PNG")
    args = p.parse_args()
    setup(args.threads)
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import GateConfig

    model = build_model(str(CONFIG), window=WINDOW, device="cpu", runtime="torch")
    features = {s: cached(f"lite0grid_{s}", lambda s=s: encode_season(model, s))
                for s in ("summer", "winter")}
    all_streams = streams(model, features)
    default = GateConfig()
    print(f"default gate: threshold {default.threshold}, consistency {default.consistency}, "
          f"tolerance {default.tolerance}")
    curves = {}
    for tolerance in TOLERANCES:
        print(f"\ntolerance {tolerance}: false closures / recall per stream; pooled precision "
              "(S: summer, W: winter; A-B+C: frames A-B, then the same frames of season C)")
        print(f"{'consistency':>11s} {'threshold':>9s}  "
              + "  ".join(f"{s.name:>16s}" for s in all_streams) + "  precision")
        for consistency in CONSISTENCY:
            for threshold in THRESHOLDS:
                cells, n_all, n_false, recalls = [], 0, 0, []
                for s in all_streams:
                    closures, false, recall = score(s, threshold, consistency, tolerance)
                    n_all, n_false = n_all + closures, n_false + false
                    recalls.append(recall)
                    cells.append(f"{false:5d} / {recall:5.3f}")
                precision = 1 - n_false / n_all if n_all else 1.0
                mark = " <- default" if (threshold, consistency, tolerance) == (
                    default.threshold, default.consistency, default.tolerance) else ""
                print(f"{consistency:11d} {threshold:9.2f}  ".replace("-inf", "none")
                      + "  ".join(f"{c:>16s}" for c in cells) + f"  {precision:9.4f}{mark}")
                curves.setdefault((tolerance, consistency), []).append(
                    (float(np.mean(recalls)), n_false))
    report_load()
    if args.plot:
        plot(curves, args.plot, default)


def plot(curves: dict, path: str, default) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (tolerance, consistency), points in curves.items():
        if tolerance != default.tolerance:
            continue
        r, false = zip(*points, strict=True)
        ax.plot(r, false, marker="o", ms=3, label=f"consistency {consistency}")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("recall (mean over the 5 streams)")
    ax.set_ylabel("false closures (all streams)")
    ax.set_title(f"Loop-closure gate on Nordland, tolerance {default.tolerance}; threshold "
                 f"none, {THRESHOLDS[1]} .. {THRESHOLDS[-1]} along each line", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot -> {path}")


if __name__ == "__main__":
    main()
