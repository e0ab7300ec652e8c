"""Resident memory over a long slam replay: flat apart from the map's own growth.

    python benchmarks/memory.py [--frames 50000] [--model pixels+avg] [--index flat|hnsw]
                                [--runtime auto|torch|onnxruntime]

Replays Nordland frames (summer then winter, cycled, stamps at 10 Hz) through
``StreamingLocalizer`` in slam mode in batches of 32, as ``seqvpr localize``
does: every window is searched (recent past excluded) and added to the map.
Prints the process's resident memory, the map's own bytes (FAISS index,
keyframe rows, slam bookkeeping) and the rest, which must stay within 5%.
The default model is the learning-free SeqSLAM-style one so that 50,000 frames
take minutes on a CPU; ``--model`` takes any spec (the path is the same).
``--index`` is the growing map's index (``seqvpr localize --index``); the
ms/frame column shows what the search costs as the map grows. ``--runtime`` is
the encoder's (the node's ``runtime``; ``auto`` by default, as there).
"""

from __future__ import annotations

import sys
import time

from _common import nordland_frames, parser, report_load, setup

BATCH = 32


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def map_bytes(loc) -> int:
    """What the map holds: index bytes, keyframe columns, the slam end-stamp list."""
    import faiss

    m = loc.map
    total = len(faiss.serialize_index(m.searched_index))
    for values in m.keyframes._cols.values():
        total += sys.getsizeof(values) + sum(sys.getsizeof(v) for v in values[-1000:]) \
            * len(values) // max(1, min(1000, len(values)))
    own = loc._own_end_ns
    return total + sys.getsizeof(own) + 32 * len(own)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--frames", type=int, default=50_000)
    p.add_argument("--model", default="pixels+avg")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--index", default="flat", choices=("flat", "hnsw"))
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnxruntime"),
                   help="the encoder's runtime, as the node's `runtime` parameter")
    args = p.parse_args()
    setup(args.threads)
    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.maps.indexes import index_spec
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import LocalizerConfig, StreamingLocalizer, WindowConfig

    model = build_model(args.model, runtime=args.runtime)
    print(f"encoder runtime: {model.encoder.runtime_name}")
    frames = nordland_frames("summer") + nordland_frames("winter")
    spec = index_spec(args.index, model.descriptor_dim, 0)
    loc = StreamingLocalizer(model, PlaceMap(model.descriptor_dim, index_spec=spec),
                             LocalizerConfig("slam", WindowConfig.fixed(args.window),
                                             exclude_recent_s=30.0))
    checkpoints = [args.frames * k // 10 for k in range(1, 11)]
    base, since, t0 = None, 0, time.perf_counter()
    print(f"map index {spec}")
    print(f"{'frames':>7s} {'keyframes':>9s} {'RSS MB':>8s} {'map MB':>8s} {'rest MB':>8s} "
          f"{'rest vs first':>13s} {'ms/frame':>9s}")
    for start in range(0, args.frames, BATCH):
        idx = range(start, min(start + BATCH, args.frames))
        loc.feed([frames[i % len(frames)] for i in idx], [int(i * 1e8) for i in idx])
        done = idx[-1] + 1
        if checkpoints and done >= checkpoints[0]:
            checkpoints.pop(0)
            ms = 1000 * (time.perf_counter() - t0) / (done - since)
            rss, mb = rss_bytes(), map_bytes(loc)
            base = base or (rss - mb, len(loc.map), rss)
            print(f"{done:7d} {len(loc.map):9d} {rss / 2**20:8.1f} {mb / 2**20:8.1f} "
                  f"{(rss - mb) / 2**20:8.1f} {100 * ((rss - mb) / base[0] - 1):+12.2f}% "
                  f"{ms:9.2f}", flush=True)
            since, t0 = done, time.perf_counter()
    grown = len(loc.map) - base[1]
    print(f"RSS growth per keyframe after the first checkpoint: "
          f"{(rss_bytes() - base[2]) / max(grown, 1):.0f} B "
          f"(descriptor alone: {4 * model.descriptor_dim} B)")
    report_load()


if __name__ == "__main__":
    main()
