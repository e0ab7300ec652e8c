"""Recall@1 table of the core models on Nordland (winter queries, summer map).

Every frame is encoded once per encoder; each aggregator and window length then
runs through the same streaming path as `seqvpr eval` (mapping, then localize).
Each cell is "current / seq2seq": Recall@1 under the current rule (the match's
last frame within the tolerance of the query's last frame) and under the seeds'
seq2seq rule (any frame of one within it of any frame of the other).

    python benchmarks/nordland_table.py [--data ../shared/data/nordland64] [--frames 2400]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import NORDLAND  # also puts this checkout first on sys.path

from seqvpr_core.data import read_image_folder
from seqvpr_core.eval import GroundTruth, encode_traversal, evaluate
from seqvpr_core.models import SequenceModel
from seqvpr_core.stream import WindowConfig

ENCODERS = {
    "pixels 16x32, 3x3 local mean (default)": {"name": "pixels"},
    "pixels 32x64, 8x8 patches (OpenSeqSLAM)": {"name": "pixels", "image_size": (32, 64),
                                                "normalise": "patch", "resize": "area"},
    "lite0 s5 GeM": {"name": "efficientnet_lite0", "stage": 5, "image_size": (64, 128)},
    "lite0 s5 GeM 2x4": {"name": "efficientnet_lite0", "stage": 5, "pool_grid": (2, 4),
                         "image_size": (64, 128)},
    "lite2 s5 GeM": {"name": "efficientnet_lite2", "stage": 5, "image_size": (64, 128)},
    "lite2 s5 GeM 2x4": {"name": "efficientnet_lite2", "stage": 5, "pool_grid": (2, 4),
                         "image_size": (64, 128)},
}
# window lengths per aggregator (L=1 is single-frame retrieval, the same for all)
AGGREGATORS = {"cat": (1, 5, 10), "avg": (5, 10), "seqgem": (5, 10), "delta": (5, 10)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(NORDLAND))
    p.add_argument("--frames", type=int, default=2400, help="first N frames of each season")
    p.add_argument("--tolerance", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    db = read_image_folder(Path(args.data) / "summer").subset(0, args.frames)
    q = read_image_folder(Path(args.data) / "winter").subset(0, args.frames)
    gt = GroundTruth(tolerance=args.tolerance)
    cols = [f"{a} L={w}" for a, windows in AGGREGATORS.items() for w in windows]
    print(f"Nordland {args.frames} winter queries vs summer map, Recall@1 current / "
          f"seq2seq rule, tolerance {args.tolerance} frame(s), torch threads {args.threads}\n")
    print("| encoder | " + " | ".join(cols) + " | encode ms/frame |")
    print("|---" * (len(cols) + 2) + "|")
    for label, enc_cfg in ENCODERS.items():
        base = SequenceModel({"encoder": enc_cfg, "aggregator": "none"}).eval()
        t0 = time.perf_counter()
        dbe, qe = (encode_traversal(base, t, progress=False)[:2] for t in (db, q))
        ms = 1000 * (time.perf_counter() - t0) / (2 * args.frames)
        cells = []
        for agg, windows in AGGREGATORS.items():
            for w in windows:
                model = base.with_aggregator({"name": agg, "length": w} if agg == "cat" else agg)
                r = evaluate(model, dbe, qe, WindowConfig.fixed(w), gt)
                cells.append(f"{r.recalls['current'][1]:.3f} / {r.recalls['seq2seq'][1]:.3f}")
        print(f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
