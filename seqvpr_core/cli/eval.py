"""seqvpr eval: Recall@K of a model on a database and a query traversal."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import read_image_folder
from ..eval import GroundTruth
from ..eval.evaluate import evaluate_traversals
from ..eval.report import plot_recall_curves, write_json
from .common import add_model_options, add_window_options, load_model_from_args, window_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="Recall@K of a model on two traversals",
                       description="Map the --db traversal, localize every --query window "
                                   "and score it with the seq2seq ground truth; the same "
                                   "encoder's single-frame recall is reported alongside.")
    p.add_argument("--db", required=True, help="folder of map (database) images")
    p.add_argument("--query", required=True, help="folder of query images")
    gt = p.add_mutually_exclusive_group(required=True)
    gt.add_argument("--tolerance", type=int,
                    help="frame-aligned traversals: a match is correct within this many frames")
    gt.add_argument("--radius", type=float,
                    help="traversals with poses.csv: a match is correct within this many metres")
    p.add_argument("--json", required=True, help="report file to write")
    p.add_argument("--plot", help="recall@K plot (PNG); default: the --json path with .png")
    p.add_argument("--no-single-frame", action="store_true",
                   help="skip the single-frame reference")
    add_model_options(p)
    add_window_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    window = window_from_args(args)
    model = load_model_from_args(args, window=window.max_len)
    gt = GroundTruth(tolerance=args.tolerance, radius=args.radius)
    report = evaluate_traversals(model, read_image_folder(args.db), read_image_folder(args.query),
                                 window, gt, single_frame=not args.no_single_frame,
                                 batch_size=args.batch_size)
    write_json(args.json, report)
    plot = Path(args.plot) if args.plot else Path(args.json).with_suffix(".png")
    curves = {f"{model.name}, L={window.max_len}": report["recall"]}
    if "single_frame_recall" in report:
        curves["single frame"] = report["single_frame_recall"]
    plot_recall_curves(plot, {k: {int(K): v for K, v in c.items()} for k, c in curves.items()},
                       f"{report['query']['name']} vs {report['db']['name']} map")
    print(format_recalls(report))
    print(f"report -> {args.json}, plot -> {plot}")
    return 0


def format_recalls(report: dict) -> str:
    lines = []
    for key, label in (("single_frame_recall", "single frame"),
                       ("recall", f"sequence L={report['window']['max_len']}")):
        if key in report:
            values = "  ".join(f"R@{k} {v:.3f}" for k, v in report[key].items())
            lines.append(f"{label:>16}: {values}")
    return "\n".join(lines)
