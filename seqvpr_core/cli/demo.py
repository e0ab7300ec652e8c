"""seqvpr demo: the main job on the embedded Nordland sample.

Builds a summer map, streams the winter frames one at a time through the
localizer as a robot would, and reports single-frame vs sequence recall.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..limits import WINDOW_LENGTH
from . import STARTED

PACKAGE = Path(__file__).resolve().parent.parent
DEMO_DATA = PACKAGE / "demo_data" / "nordland"
DEMO_MODEL = PACKAGE / "configs" / "nordland_lite0_cat.yaml"
DEMO_WINDOW = 10
TOLERANCE = 1  # frames: the usual Nordland tolerance


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="map summer, localize winter on the bundled Nordland sample",
                       description="The main job end to end on the bundled sample of the "
                                   "Nordland railway (summer map, winter queries): prints "
                                   "single-frame and sequence Recall@1/5 and writes a plot.")
    p.add_argument("--out", default="seqvpr-demo",
                   help="folder for the map, matches.csv, report.json and recall.png (each "
                        "replaces only a seqvpr output of its kind, or an empty one)")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="model spec (default: EfficientNet-Lite0 grid features concatenated "
                        f"over the window, {DEMO_MODEL.name})")
    p.add_argument("--window", type=WINDOW_LENGTH.parse, default=None, metavar="L",
                   help="window length in frames (default: the model's own length if it has "
                        f"one, else {DEMO_WINDOW}; the default model concatenates any length)")
    p.add_argument("--data", default=str(DEMO_DATA),
                   help="folder with summer/ and winter/ frame-aligned image folders")
    p.set_defaults(run=run)


def _demo_model(window: int | None) -> dict:
    """The default model's config, concatenating ``window`` frames when given: its
    aggregator has no weights, so any length is the same model."""
    import yaml

    config = yaml.safe_load(DEMO_MODEL.read_text())
    if window is not None:
        config["aggregator"]["length"] = window
    return config


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..atomic import write_json
    from ..data import read_image, read_image_folder
    from ..eval import RULES, GroundTruth, recall_at_k, window_positives
    from ..eval.evaluate import encode_traversal, evaluate, frame_spans, ranked_ids
    from ..eval.full_report import by_rule
    from ..eval.ground_truth import accepted_offset
    from ..eval.report import plot_recall_curves
    from ..maps import PlaceMap
    from ..models import build_model
    from ..outputs import MAP, PLOT, REPORT, TABLE, OutputPlan
    from ..stream import LocalizerConfig, StreamingLocalizer, WindowConfig, check_window, replay
    from .common import set_threads
    from .localize_output import write_csv

    if args.threads is None:
        # One frame at a time on 64x32 images: intra-op threads only add barrier waits,
        # which stall badly when anything else shares the two cores.
        set_threads(1)
    out = Path(args.out)
    plan = OutputPlan()
    paths = {"map": plan.claim(out / "map", MAP, "--out map"),
             "matches": plan.claim(out / "matches.csv", TABLE, "--out matches.csv"),
             "report": plan.claim(out / "report.json", REPORT, "--out report.json"),
             "plot": plan.claim(out / "recall.png", PLOT, "--out recall.png")}
    spec = args.model or _demo_model(args.window)
    model = build_model(spec, window=args.window or DEMO_WINDOW, runtime="auto")
    length = args.window or model.fixed_length or DEMO_WINDOW
    window = WindowConfig.fixed(length)
    check_window(model, window)  # a fixed-length --model given another --window
    summer = read_image_folder(Path(args.data) / "summer")
    winter = read_image_folder(Path(args.data) / "winter")
    gt = GroundTruth(tolerance=TOLERANCE)
    print(f"seqvpr demo: {model.name}, window {length}, "
          f"{len(summer)} summer map frames, {len(winter)} winter query frames")

    # 1. map the summer traversal and save it (atomic, validated on load)
    place_map = PlaceMap.for_model(model, window, args.model or DEMO_MODEL)
    mapper = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    for _ in replay(mapper, summer, desc="map summer"):
        pass
    place_map.save(paths["map"])
    place_map = PlaceMap.load(paths["map"])

    # 2. stream winter frames one at a time, as the robot's camera delivers them
    localizer = StreamingLocalizer(model, place_map,
                                   LocalizerConfig("localize", window, top_k=20))
    results = []
    for i in tqdm(range(len(winter)), desc="localize winter", unit="frame"):
        r = localizer.step(read_image(winter.paths[i]), int(winter.stamps_ns[i]),
                           name=winter.paths[i].name, index=i, source=winter.name)
        if r is not None:
            results.append(r)
    table = place_map.keyframes
    db_spans = np.stack([table.column("first_index"), table.column("last_index")], 1)
    ranked, q_spans = ranked_ids(results, 20), frame_spans(results)
    positives = {rule: window_positives(q_spans, db_spans, len(summer),
                                        gt.under(rule)) for rule in RULES}
    seq = {rule: recall_at_k(ranked, p) for rule, p in positives.items()}
    write_csv(paths["matches"], ["query_index", "query_name", "match_index", "match_name",
                                    "score", *(f"correct_{rule}" for rule in RULES)],
              [[r.last.index, r.last.name, r.matches[0].keyframe.last_index,
                r.matches[0].keyframe.name, f"{r.matches[0].score:.4f}",
                *(int(r.matches[0].keyframe_id in positives[rule][i]) for rule in RULES)]
               for i, r in enumerate(results)])

    # 3. single-frame reference: the same encoder, windows of one frame
    with torch.inference_mode():
        enc = [encode_traversal(model, t, progress=False)[:2] for t in (summer, winter)]
    single = evaluate(model.with_aggregator("none"), enc[0], enc[1], WindowConfig.fixed(1),
                      gt).recalls

    report = {"model": model.name, "window": length,
              "ground_truth": {**gt.criterion(), "rules": {
                  rule: {"description": RULES[rule].description,
                         **accepted_offset(q_spans, db_spans, p, gt)}
                  for rule, p in positives.items()}},
              "map_frames": len(summer), "query_frames": len(winter),
              "recall": by_rule(seq), "single_frame_recall": by_rule(single),
              "seqvpr_version": __version__}
    write_json(paths["report"], report, REPORT)
    plot_recall_curves(paths["plot"], {"single frame": single,
                                       f"sequence ({model.name}, L={length})": seq},
                       "Nordland sample: winter queries vs summer map")
    print(f"\nRecall@K within {TOLERANCE} frame (current: of the window's last frame; "
          "seq2seq: of any frame, the seeds' rule)")
    print(f"{'':>14}  " + "  ".join(f"{f'{rule} R@{k}':>12}" for rule in RULES for k in (1, 5)))
    for label, recalls in (("single frame", single), ("sequence", seq)):
        print(f"{label:>14}  " + "  ".join(f"{recalls[rule][k]:12.3f}"
                                           for rule in RULES for k in (1, 5)))
    print(f"\nmap -> {out / 'map'}; matches -> {out / 'matches.csv'}; "
          f"plot -> {out / 'recall.png'} ({time.perf_counter() - STARTED:.0f} s, start-up "
          "included)")
    return 0
