"""seqvpr eval: Recall@K of a model on a database and a query traversal."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..limits import DEGREES, METRES, NON_NEGATIVE_COUNT, WINDOW_LENGTH, Limit
from ..outputs import PLOT, REPORT, OutputPlan
from .common import UsageError, add_model_options, add_window_options, load_model_and_window

EXAMPLES = Limit(integer=True, low=0, high=100)


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="Recall@K of a model on two traversals",
                       description="Map the --db traversal, localize every --query window "
                                   "and score it with the seq2seq ground truth; the same "
                                   "encoder's single-frame recall is reported alongside, with "
                                   "precision-recall, timing and memory. Writes the JSON report, "
                                   "a recall@K plot, a PR plot and a figure of example matches.")
    p.add_argument("--db", help="folder of map (database) images")
    p.add_argument("--query", help="folder of query images")
    p.add_argument("--data", metavar="CONFIG",
                   help="instead of --db/--query: a training config (config/train/*.yaml) "
                        "whose dataset reader gives the traversal pairs of --split")
    p.add_argument("--split", default="test", help="split of --data to evaluate (default test)")
    gt = p.add_mutually_exclusive_group(required=True)
    gt.add_argument("--tolerance", type=NON_NEGATIVE_COUNT.parse,
                    help="frame-aligned traversals: a match is correct within this many frames")
    gt.add_argument("--radius", type=METRES.parse,
                    help="traversals with poses.csv: a match is correct within this many metres")
    p.add_argument("--max-heading", type=DEGREES.parse,
                   help="with --radius: a match must also face within this many degrees")
    p.add_argument("--json", required=True,
                   help="report file to write (replaces only a report seqvpr wrote)")
    p.add_argument("--plot", help="recall@K plot (PNG); default: the --json path with .png")
    p.add_argument("--no-single-frame", action="store_true",
                   help="skip the single-frame reference")
    p.add_argument("--sweep", type=WINDOW_LENGTH.parse_list, default=[],
                   metavar="L1,L2,...",
                   help="also evaluate these test-time window lengths (variable-length models)")
    p.add_argument("--reverse", action="store_true",
                   help="also evaluate every query window in reversed frame order")
    p.add_argument("--seqslam", action="store_true",
                   help="add SeqSLAM-style sequence matching on the same frame features")
    p.add_argument("--delta", action="store_true",
                   help="add delta descriptors (Garg et al., RA-L 2020): the change of the "
                        "same frame features over each window, learning-free")
    p.add_argument("--examples", type=EXAMPLES.parse, default=6, metavar="N",
                   help="example query windows in the matches figure (0: no figure)")
    add_model_options(p)
    add_window_options(p)
    p.set_defaults(run=run)


def _pairs(args: argparse.Namespace):
    if args.data:
        if args.db or args.query:
            raise UsageError("give either --data or --db/--query, not both")
        from ..data.pairs import read_dataset
        from ..train import load_config

        cfg = load_config(args.data)
        splits = read_dataset(cfg.data.reader, cfg.data.root, **cfg.data.options)
        if args.split not in splits:
            raise UsageError(f"{args.data} has no split {args.split!r}; it has "
                             f"{sorted(splits)}")
        return [(p.name, p.db, p.query) for p in splits[args.split]]
    if not (args.db and args.query):
        raise UsageError("give --db and --query image folders, or --data CONFIG")
    from ..data import read_image_folder

    db, query = read_image_folder(args.db), read_image_folder(args.query)
    return [(f"{query.name} vs {db.name}", db, query)]


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_json
    from ..eval import GroundTruth
    from ..eval.evaluate import evaluate_report

    plan = OutputPlan()
    json_path = plan.claim(args.json, REPORT, "--json")
    gt = GroundTruth(tolerance=args.tolerance, radius=args.radius,
                     max_heading_deg=args.max_heading)
    model, window = load_model_and_window(args)  # a window mismatch: before any frame
    pairs = _pairs(args)
    figures = [_claim_figures(plan, args, json_path, i, len(pairs)) for i in range(len(pairs))]
    reports = []
    for (name, db, query), paths in zip(pairs, figures, strict=True):
        report, results = evaluate_report(
            model, db, query, window, gt, single_frame=not args.no_single_frame,
            batch_size=args.batch_size, window_sweep=args.sweep, reverse=args.reverse,
            seqslam=args.seqslam, baselines=("delta",) if args.delta else ())
        report["pair"] = name
        reports.append(report)
        _figures(args, report, results, db, query, paths, name)
    report = reports[0] if len(reports) == 1 else _pooled(reports)
    write_json(json_path, {**report, "seqvpr_version": __version__}, REPORT)
    print(format_recalls(report))
    print(f"report -> {json_path}, plots -> {json_path.with_suffix('')}*.png")
    return 0


def _claim_figures(plan: OutputPlan, args, json_path: Path, i: int, n: int) -> dict[str, Path]:
    """The plot files of pair ``i`` of ``n``, claimed before the work."""
    stem = json_path.with_suffix("") if n == 1 else \
        json_path.with_suffix("").with_name(f"{json_path.stem}_pair{i}")
    recall = Path(args.plot) if args.plot and n == 1 else stem.with_suffix(".png")
    paths = {"recall": plan.claim(recall, PLOT, "--plot" if args.plot and n == 1 else
                                  "the recall plot (<json>.png)"),
             "pr": plan.claim(stem.with_name(stem.name + "_pr.png"), PLOT,
                              "the PR plot (<json>_pr.png)")}
    if args.examples > 0:
        paths["examples"] = plan.claim(stem.with_name(stem.name + "_examples.png"), PLOT,
                                       "the examples figure (<json>_examples.png)")
    return paths


def _figures(args, report, results, db, query, paths: dict[str, Path], name: str) -> None:
    from ..eval.figures import plot_examples, plot_pr_curves
    from ..eval.report import plot_recall_curves

    seq_label = f"{report['model']}, L={report['window']['max_len']}"
    curves = {seq_label: report["recall"]}
    for key, label in (("single_frame_recall", "single frame"),
                       ("seqslam_recall", "SeqSLAM (same features)"),
                       ("delta_recall", "delta descriptors (same features)")):
        if key in report:
            curves[label] = report[key]
    plot_recall_curves(paths["recall"],
                       {k: {int(K): v for K, v in c.items()} for k, c in curves.items()}, name)
    labels = {"sequence": seq_label, "single_frame": "single frame", "seqslam": "SeqSLAM",
              "delta": "delta descriptors"}
    plot_pr_curves(paths["pr"], {labels[k]: v for k, v in report["pr"].items()},
                   f"{name}: best match")
    if "examples" in paths:
        r = results["sequence"]
        plot_examples(paths["examples"], query, db, r.query_windows,
                      r.db_windows, r.ranked_ids, r.positives, n=args.examples,
                      title=f"{report['model']}: {name} (green = correct)")


def _pooled(reports: list[dict]) -> dict:
    """Several pairs: recall weighted by each pair's query windows; pairs kept in full."""
    out = {"model": reports[0]["model"], "pairs": reports}
    for key in [k for k in reports[0] if k.endswith("recall")]:
        total = sum(r[key.replace("recall", "queries")] for r in reports)
        out[key] = {k: sum(r[key][k] * r[key.replace("recall", "queries")] for r in reports)
                    / total for k in reports[0][key]}
    out["window"] = reports[0]["window"]
    return out


def format_recalls(report: dict) -> str:
    lines = []
    for key, label in (("single_frame_recall", "single frame"),
                       ("seqslam_recall", "SeqSLAM"),
                       ("delta_recall", "delta"),
                       ("recall", f"sequence L={report['window']['max_len']}"),
                       ("forward_blocks_recall", "forward blocks"),
                       ("reversed_recall", "reversed blocks")):
        if key in report:
            values = "  ".join(f"R@{k} {v:.3f}" for k, v in report[key].items())
            lines.append(f"{label:>16}: {values}")
    return "\n".join(lines)
