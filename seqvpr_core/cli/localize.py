"""seqvpr localize: replay a folder of images against a map, write the matches."""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

from ..data import read_image_folder
from ..maps import PlaceMap
from ..stream import GateConfig, LocalizerConfig, StreamingLocalizer, WindowConfig, replay
from .common import LOG, add_model_options, load_model_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("localize", help="match a folder of images against a map",
                       description="Stream the images through the localizer and write one "
                                   "CSV row per query window with its top-k map keyframes.")
    p.add_argument("--map", required=True, help="map directory made by build-map")
    p.add_argument("--images", required=True, help="folder of query images, file-name order")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--top-k", type=int, default=5, help="matches per window")
    p.add_argument("--mode", default="localize", choices=("localize", "slam"),
                   help="slam: the map also grows from the query stream")
    p.add_argument("--exclude-recent", type=float, default=30.0, metavar="SECONDS",
                   help="slam: ignore map entries from the last SECONDS before a window")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="loop-closure gate: minimum score of the best match")
    p.add_argument("--consistency", type=int, default=3,
                   help="loop-closure gate: consecutive windows that must agree")
    add_model_options(p, required=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    place_map = PlaceMap.load(args.map)
    window = WindowConfig(**place_map.window)
    spec = args.model or place_map.model.get("config")
    if spec is None:
        raise SystemExit(f"error: {args.map} does not record its model; pass --model")
    model = load_model_from_args(args, spec=spec, window=window.max_len)
    config = LocalizerConfig(args.mode, window, top_k=args.top_k,
                             exclude_recent_s=args.exclude_recent,
                             gate=GateConfig(args.threshold, args.consistency))
    localizer = StreamingLocalizer(model, place_map, config)
    traversal = read_image_folder(args.images)
    rows = []
    for r in replay(localizer, traversal, args.batch_size):
        row = [r.last.index, r.last.name,
               "" if r.loop_closure is None else r.loop_closure.match.keyframe_id]
        for m in r.matches:
            row += [m.keyframe_id, m.keyframe.last_index, m.keyframe.name, f"{m.score:.6f}"]
        rows.append(row)
    header = ["query_index", "query_name", "loop_closure_id"]
    for k in range(1, args.top_k + 1):
        header += [f"match{k}_id", f"match{k}_index", f"match{k}_name", f"match{k}_score"]
    write_csv(args.out, header, rows)
    LOG.info("%d windows localized", len(rows))
    print(f"localize: {len(rows)} query windows -> {args.out}")
    return 0


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list]) -> None:
    """Atomic CSV write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
