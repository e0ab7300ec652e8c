"""seqvpr localize: replay an image folder or a rosbag against a map (or grow one, slam)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..catalog import GROWING_INDEX_KINDS
from ..limits import COUNT, NON_NEGATIVE_COUNT, SECONDS, THRESHOLD, TOP_K
from ..outputs import MAP, PLOT, TABLE, OutputPlan
from ..stream.gate import GateConfig  # light: the gate's defaults for --help
from .build_map import add_source_options, source_from_args
from .common import (
    LOG,
    UsageError,
    add_model_options,
    add_window_options,
    check_min_len,
    load_model_and_window,
    load_model_from_args,
    report_stream,
)

if TYPE_CHECKING:
    from ..maps import PlaceMap
    from ..stream import WindowConfig

FORMATS = ("csv", "jsonl")


def add_parser(sub) -> None:
    p = sub.add_parser("localize", help="match an image folder or a rosbag against a map",
                       description="Stream the frames through the localizer; write one row "
                                   "per query window with its top-k map keyframes, the "
                                   "loop-closure candidates, and a trajectory plot with the "
                                   "loop closures when the frames have poses.")
    p.add_argument("--map", help="map directory made by build-map (slam: optional prior map)")
    add_source_options(p, "query")
    p.add_argument("--out", required=True, help="matches file, one row per window (.csv or "
                                                ".jsonl); replaces only a table seqvpr wrote")
    p.add_argument("--format", choices=FORMATS,
                   help="matches and loops format (default: from the --out suffix, else csv)")
    p.add_argument("--loops", help="loop-closure candidates file (default: <out>.loops.<fmt>)")
    p.add_argument("--plot", help="trajectory plot (.png, .pdf or .svg), written when poses "
                                  "exist (default: <out>.png)")
    p.add_argument("--top-k", type=TOP_K.parse, default=5,
                   help="matches per window (at most the map's size in localize mode)")
    p.add_argument("--mode", default="localize", choices=("localize", "slam"),
                   help="slam: the map also grows from the query stream")
    p.add_argument("--save-map", help="slam: write the grown map to this directory")
    p.add_argument("--index", choices=GROWING_INDEX_KINDS,
                   help="slam without --map: index of the map that grows (default flat, "
                        "exact; hnsw: sub-linear search for long runs)")
    p.add_argument("--exclude-recent", type=SECONDS.parse, default=30.0, metavar="SECONDS",
                   help="slam: ignore map entries from the last SECONDS before a window")
    p.add_argument("--threshold", type=THRESHOLD.parse, default=GateConfig.threshold,
                   help="loop-closure gate: minimum score of the best match (inner product "
                        "for ip maps, -squared L2 distance for l2 maps); default: none")
    p.add_argument("--consistency", type=COUNT.parse, default=GateConfig.consistency,
                   help="loop-closure gate: consecutive windows whose best matches move on "
                        "along the map with the query")
    p.add_argument("--consistency-tolerance", type=NON_NEGATIVE_COUNT.parse,
                   default=GateConfig.tolerance, metavar="ENTRIES",
                   help="loop-closure gate: map entries those matches may drift from one "
                        "entry per window")
    add_model_options(p, required=False,
                      what="with --map: by default the map's own model (it must match); ")
    add_window_options(p, default="the map's; slam without --map: the model's own length "
                                  "if it has one, else 10")
    p.set_defaults(run=run)


def _map_window(args: argparse.Namespace, place_map: PlaceMap) -> WindowConfig:
    """The map's windows; --window/--min-len/--stride override them, said out loud
    (a fixed-length model then refuses a length it cannot aggregate)."""
    from ..stream import WindowConfig

    if not place_map.window and args.window is None:
        raise UsageError(f"{args.map} does not record its window; pass --window")
    check_min_len(args, args.window or place_map.window["max_len"])
    window = WindowConfig.override(place_map.window, args.window, args.min_len, args.stride)
    recorded = WindowConfig(**place_map.window) if place_map.window else None
    if recorded is not None and window != recorded:
        print(f"localize: query windows {window.min_len}..{window.max_len} frames, stride "
              f"{window.stride}; the map's are {recorded.min_len}..{recorded.max_len}, "
              f"stride {recorded.stride}")
    return window


def _open_map(args: argparse.Namespace):
    """(map, window, model): a saved map with the model it carries (or --model, which
    must be the same), or in slam mode an empty map for --model."""
    from ..maps import PlaceMap
    from ..maps.indexes import index_spec
    from ..stream import check_window

    if args.map:
        if args.index:
            raise UsageError(f"--index sets the index of a new slam map; {args.map} "
                             "keeps its own")
        place_map = PlaceMap.load(args.map)
        window = _map_window(args, place_map)
        spec = args.model or place_map.model_spec()
        if spec is None:
            raise UsageError(f"{args.map} does not record its model; pass --model")
        model = load_model_from_args(args, spec=spec, window=window.max_len)
        check_window(model, window)
        place_map.check_model(model.fingerprint(), model.descriptor_dim)
        origin = "--model" if args.model else place_map.model_file or "the config it records"
        print(f"map: {len(place_map)} entries, index {place_map.index_spec}, model "
              f"{model.name} from {origin}")
        return place_map, window, model
    if args.mode != "slam":
        raise UsageError("--map is required in localize mode")
    if not args.model:
        raise UsageError("slam without --map needs --model")
    model, window = load_model_and_window(args)
    spec = index_spec(args.index or "flat", model.descriptor_dim, 0)
    place_map = PlaceMap.for_model(model, window, args.model, index_spec=spec)
    return place_map, window, model


def run(args: argparse.Namespace) -> int:
    from ..stream import LocalizerConfig, StreamingLocalizer, replay
    from .localize_output import (
        LOOP_COLUMNS,
        loop_record,
        plot_trajectory,
        window_header,
        window_record,
        window_row,
        write_csv,
        write_jsonl,
    )

    if args.save_map and args.mode != "slam":
        raise UsageError("--save-map needs --mode slam")
    out = Path(args.out)
    if out.suffix.lower() == ".json" and not args.format:
        raise UsageError(f"--out {out}: localize writes CSV or JSON lines (one object per "
                         "window, not one JSON document); name it .csv or .jsonl, or give "
                         "--format")
    fmt = args.format or ("jsonl" if out.suffix == ".jsonl" else "csv")
    # every output claimed before any work: none may replace what seqvpr did not write,
    # nor another output of this run (the loops file landing on the matches file)
    plan = OutputPlan()
    out = plan.claim(out, TABLE, "--out")
    loops_path = plan.claim(args.loops or out.with_suffix(f".loops.{fmt}"), TABLE,
                            "--loops" if args.loops else "the loops file (<out>.loops.*)")
    plot = plan.claim(args.plot or out.with_suffix(".png"), PLOT,
                      "--plot" if args.plot else "the plot (<out>.png)")
    save_map = plan.claim(args.save_map, MAP, "--save-map") if args.save_map else None
    place_map, window, model = _open_map(args)
    source = source_from_args(args)
    if len(source) < window.min_len:
        raise ValueError(f"{source.name}: {len(source)} frames make no window of "
                         f"{window.min_len} frames; nothing to localize")
    top_k = args.top_k
    if args.mode == "localize" and top_k > len(place_map):
        top_k = max(1, len(place_map))
        print(f"--top-k {args.top_k}: the map has {len(place_map)} entries; {top_k} matches "
              "per window")
    config = LocalizerConfig(args.mode, window, top_k=top_k,
                             exclude_recent_s=args.exclude_recent,
                             gate=GateConfig(args.threshold, args.consistency,
                                             args.consistency_tolerance))
    localizer = StreamingLocalizer(model, place_map, config)
    prior = [place_map.keyframes[i] for i in range(len(place_map))]
    results = list(replay(localizer, source, args.batch_size))
    loops = [loop_record(r) for r in results if r.loop_closure is not None]
    if fmt == "jsonl":
        write_jsonl(out, [window_record(r) for r in results])
        write_jsonl(loops_path, loops)
    else:
        write_csv(out, window_header(top_k), [window_row(r) for r in results])
        write_csv(loops_path, LOOP_COLUMNS, [list(d.values()) for d in loops])
    plotted = plot_trajectory(plot, results, prior, source.name)
    if save_map is not None:
        place_map.save(save_map)
    LOG.info("%d windows localized, %d loop closures", len(results), len(loops))
    print(f"localize: {len(results)} query windows -> {out}; {len(loops)} loop closures -> "
          f"{loops_path}" + (f"; plot -> {plot}" if plotted else "; no poses, no plot")
          + (f"; map ({len(place_map)} entries) -> {save_map}" if save_map else ""))
    report_stream(localizer)
    return 0
