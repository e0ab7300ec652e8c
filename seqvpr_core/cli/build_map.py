"""seqvpr build-map: stream an image folder or a rosbag in mapping mode and save the map."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..catalog import INDEX_KINDS, METRICS
from ..limits import DIMENSION, METRES, SECONDS
from ..outputs import MAP, OutputPlan
from .common import (
    LOG,
    UsageError,
    add_model_options,
    add_window_options,
    load_model_and_window,
    report_stream,
)

if TYPE_CHECKING:
    from ..data import FrameSource


def add_source_options(p: argparse.ArgumentParser, what: str) -> None:
    """--images FOLDER or --bag BAG --topic T [--odom-topic O] plus keyframe spacing."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="FOLDER",
                     help=f"folder of {what} images, read in file-name order (optional "
                          "poses.csv: name,stamp,x,y[,heading])")
    src.add_argument("--bag", help=f"rosbag2 of {what} frames: a bag directory or a .db3/.mcap "
                                   "file (sqlite3 or MCAP storage)")
    p.add_argument("--topic", help="--bag: image topic (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--odom-topic", help="--bag: nav_msgs/Odometry or geometry_msgs/PoseStamped "
                                        "topic; poses are interpolated to the frame stamps")
    p.add_argument("--min-distance", type=METRES.parse, default=0.0, metavar="METRES",
                   help="--bag: keep a frame only after moving this far (needs --odom-topic)")
    p.add_argument("--min-interval", type=SECONDS.parse, default=0.0, metavar="SECONDS",
                   help="--bag: keep a frame only this long after the previous one")


def source_from_args(args: argparse.Namespace) -> FrameSource:
    from ..data import KeyframeSpacing, read_bag, read_image_folder

    spacing = KeyframeSpacing(args.min_distance, args.min_interval)
    if args.images is not None:
        if args.topic or args.odom_topic or spacing.enabled:
            raise UsageError("--topic, --odom-topic, --min-distance and --min-interval "
                             "apply to --bag only")
        return read_image_folder(args.images)
    if not args.topic:
        raise UsageError("--bag needs --topic (the image topic)")
    frames = read_bag(args.bag, args.topic, args.odom_topic, spacing)
    print(f"{frames.name}: {len(frames)} frames of {frames.total_messages}"
          + (f" (kept by spacing {spacing.min_distance_m} m / {spacing.min_interval_s} s)"
             if spacing.enabled else "")
          + (", poses from " + args.odom_topic if args.odom_topic else ""))
    for note in frames.damage:
        print(f"warning: {note}; the frames before it are used")
    return frames


def add_parser(sub) -> None:
    p = sub.add_parser("build-map", help="build a place map from an image folder or a rosbag",
                       description="Encode every frame once, aggregate each window and "
                                   "write the map directory (manifest, FAISS index, keyframes "
                                   "with stamps and poses).")
    add_source_options(p, "map")
    p.add_argument("--out", required=True,
                   help="map directory to write; it may replace only a seqvpr map (recognised "
                        "by its manifest.json) or an empty directory, atomically")
    p.add_argument("--metric", default=None, choices=METRICS,
                   help="inner product (cosine on normalised descriptors) or L2; default: "
                        "what the model's descriptors need (l2 for the raw ones of JIST's "
                        "SeqGeM or vg-transformers' CAT/FC, ip otherwise)")
    p.add_argument("--index", default="auto", choices=INDEX_KINDS,
                   help="FAISS index: exact flat, hnsw (graph, grows online), ivf-flat, ivf-pq "
                        "(compact codes); auto: exact while a query takes at most 1 ms on one "
                        "core, approximate beyond (it says which and why)")
    p.add_argument("--pca", type=DIMENSION.parse, default=None, metavar="DIM",
                   help="project descriptors to DIM dims by PCA learned from the map itself")
    add_model_options(p)
    add_window_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..maps import PlaceMap
    from ..maps.indexes import auto_choice, index_spec
    from ..stream import LocalizerConfig, StreamingLocalizer, replay

    out = OutputPlan().claim(args.out, MAP, "--out")  # refused before any work
    model, window = load_model_and_window(args)
    source = source_from_args(args)
    n_windows = max(0, (len(source) - window.min_len) // window.stride + 1)
    if not n_windows:
        raise ValueError(f"{source.name}: {len(source)} frames make no window of "
                         f"{window.min_len} frames; nothing to map")
    metric = args.metric or model.metric
    spec = index_spec(args.index, model.descriptor_dim, n_windows, args.pca, metric)
    why = auto_choice(n_windows, args.pca or model.descriptor_dim)[1] \
        if args.index == "auto" else f"{args.index}, as asked"
    print(f"index: {spec} ({why})")
    place_map = PlaceMap.for_model(model, window, args.model, metric, spec)
    mapper = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    for _ in replay(mapper, source, args.batch_size):
        pass
    report_stream(mapper)
    path = place_map.save(out)
    LOG.info("wrote %d map entries from %d frames to %s", len(place_map), len(source), path)
    print(f"map: {len(place_map)} entries ({model.descriptor_dim}-d, {model.name}) and its "
          f"model -> {path}")
    return 0
