"""seqvpr build-map: stream a traversal in mapping mode and save the map."""

from __future__ import annotations

import argparse

from ..data import read_image_folder
from ..maps import PlaceMap
from ..maps.place_map import METRICS
from ..stream import LocalizerConfig, StreamingLocalizer, replay
from .common import LOG, add_model_options, add_window_options, load_model_from_args, window_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("build-map", help="build a place map from a folder of images",
                       description="Encode every frame once, aggregate each window and "
                                   "write the map directory (manifest, FAISS index, keyframes).")
    p.add_argument("--images", required=True, help="folder of images, read in file-name order")
    p.add_argument("--out", required=True, help="map directory to write (replaced atomically)")
    p.add_argument("--metric", default="ip", choices=METRICS,
                   help="inner product (cosine on normalised descriptors) or L2")
    add_model_options(p)
    add_window_options(p)
    p.set_defaults(run=run)


def model_info(model, spec) -> dict:
    return {"name": model.name, "config": model.config, "fingerprint": model.fingerprint(),
            "spec": str(spec)}


def run(args: argparse.Namespace) -> int:
    window = window_from_args(args)
    model = load_model_from_args(args, window=window.max_len)
    traversal = read_image_folder(args.images)
    place_map = PlaceMap(model.descriptor_dim, args.metric, model_info(model, args.model),
                         window={"min_len": window.min_len, "max_len": window.max_len,
                                 "stride": window.stride})
    mapper = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    for _ in replay(mapper, traversal, args.batch_size):
        pass
    path = place_map.save(args.out)
    LOG.info("wrote %d map entries from %d frames to %s", len(place_map), len(traversal), path)
    print(f"map: {len(place_map)} entries ({model.descriptor_dim}-d, {model.name}) -> {path}")
    return 0
