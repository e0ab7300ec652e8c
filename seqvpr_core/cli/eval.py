"""seqvpr eval: Recall@K of a model on a database and a query traversal."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..catalog import EVAL_BASELINES, GT_RULES
from ..limits import DEGREES, METRES, NON_NEGATIVE_COUNT, WINDOW_LENGTH, Limit
from ..outputs import PLOT, REPORT, OutputPlan
from .common import UsageError, add_model_options, add_window_options, load_model_and_window

EXAMPLES = Limit(integer=True, low=0, high=100)


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="Recall@K of a model on two traversals",
                       description="Map the --db traversal, localize every --query window "
                                   "and score it under both ground-truth rules: current (the "
                                   "match's last frame within the tolerance/radius of the "
                                   "query's last frame: where the robot is now) and seq2seq "
                                   "(any frame of one within it of any frame of the other, "
                                   "the seeds' rule). The same encoder's single-frame recall "
                                   "is reported alongside, with precision-recall, timing and "
                                   "memory. Writes the JSON report, a recall@K plot, a PR plot "
                                   "and a figure of example matches.")
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
    p.add_argument("--plot", help="recall@K plot (.png, .pdf or .svg); default: the --json "
                                  "path with .png (one pair only)")
    p.add_argument("--no-single-frame", action="store_true",
                   help="skip the single-frame reference")
    p.add_argument("--sweep", type=WINDOW_LENGTH.parse_list, default=[],
                   metavar="L1,L2,...",
                   help="also evaluate these test-time window lengths (variable-length models)")
    p.add_argument("--reverse", action="store_true",
                   help="also evaluate every query window in reversed frame order")
    for name, help_text in EVAL_BASELINES.items():
        p.add_argument(f"--{name}", action="store_true", help=help_text)
    p.add_argument("--examples", type=EXAMPLES.parse, default=6, metavar="N",
                   help="example query windows in the matches figure (0: no figure)")
    p.add_argument("--examples-rule", choices=GT_RULES, default="current",
                   help="the rule that colours the example matches (default current)")
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
    from ..eval.full_report import evaluate_report

    plan = OutputPlan()
    json_path = plan.claim(args.json, REPORT, "--json")
    gt = GroundTruth(tolerance=args.tolerance, radius=args.radius,
                     max_heading_deg=args.max_heading)
    model, window = load_model_and_window(args)  # a window mismatch: before any frame
    pairs = _pairs(args)
    if args.plot and len(pairs) > 1:
        raise UsageError(f"--plot names one plot, but {args.data} split {args.split!r} has "
                         f"{len(pairs)} pairs: their plots are <json>_pairN.png; leave "
                         "--plot out")
    figures = [_claim_figures(plan, args, json_path, i, len(pairs)) for i in range(len(pairs))]
    reports = []
    for (name, db, query), paths in zip(pairs, figures, strict=True):
        report, results = evaluate_report(
            model, db, query, window, gt, single_frame=not args.no_single_frame,
            batch_size=args.batch_size, window_sweep=args.sweep, reverse=args.reverse,
            baselines=[name for name in EVAL_BASELINES if getattr(args, name)])
        report["pair"] = name
        reports.append(report)
        _figures(args, report, results, db, query, paths, name)
    report = reports[0] if len(reports) == 1 else _pooled(reports)
    write_json(json_path, {**report, "seqvpr_version": __version__}, REPORT)
    print(format_recalls(report))
    plots = ", ".join(str(p) for p in figures[0].values()) if len(figures) == 1 \
        else f"{json_path.with_suffix('')}_pair*.png"
    print(f"report -> {json_path}, plots -> {plots}")
    return 0


def _claim_figures(plan: OutputPlan, args, json_path: Path, i: int, n: int) -> dict[str, Path]:
    """The plot files of pair ``i`` of ``n``, claimed before the work."""
    stem = json_path.with_suffix("") if n == 1 else \
        json_path.with_suffix("").with_name(f"{json_path.stem}_pair{i}")
    recall = Path(args.plot) if args.plot else stem.with_suffix(".png")
    paths = {"recall": plan.claim(recall, PLOT, "--plot" if args.plot else
                                  "the recall plot (<json>.png)"),
             "pr": plan.claim(stem.with_name(stem.name + "_pr.png"), PLOT,
                              "the PR plot (<json>_pr.png)")}
    if args.examples > 0:
        paths["examples"] = plan.claim(stem.with_name(stem.name + "_examples.png"), PLOT,
                                       "the examples figure (<json>_examples.png)")
    return paths


def _methods(report: dict) -> dict[str, str]:
    """Report key of every method's recall -> its label, in printing order."""
    methods = {"single_frame_recall": "single frame"}
    for name, baseline in report.get("baselines", {}).items():
        methods[f"{name}_recall"] = baseline["label"]
    methods["recall"] = f"{report['model']} L={report['window']['max_len']}"
    return {k: v for k, v in methods.items() if k in report}


def _figures(args, report, results, db, query, paths: dict[str, Path], name: str) -> None:
    from ..eval.figures import plot_examples, plot_pr_curves
    from ..eval.report import plot_recall_curves

    plot_recall_curves(paths["recall"],
                       {label: report[key] for key, label in _methods(report).items()},
                       f"{name} ({_criterion(report)})")
    runs = {"single_frame": "single frame",  # the order (and colours) of the recall plot
            **{n: b["label"] for n, b in report.get("baselines", {}).items()},
            "sequence": _methods(report)["recall"]}
    plot_pr_curves(paths["pr"],
                   {rule: {label: curves[k] for k, label in runs.items() if k in curves}
                    for rule, curves in report["pr"].items()}, f"{name}: best match")
    if "examples" in paths:
        r = results["sequence"]
        plot_examples(paths["examples"], query, db, r.query_windows,
                      r.db_windows, r.ranked_ids, r.positives_by_rule, args.examples_rule,
                      n=args.examples,
                      title=f"{report['model']}: {name}; green = correct under the "
                            f"{args.examples_rule} rule ({_criterion(report)})")


def _criterion(report: dict) -> str:
    gt = report["ground_truth"]
    if "tolerance_frames" in gt:
        return f"tolerance {gt['tolerance_frames']} frame(s)"
    heading = f", heading {gt['max_heading_deg']} deg" if "max_heading_deg" in gt else ""
    return f"radius {gt['radius_m']} m{heading}"


def _pooled(reports: list[dict]) -> dict:
    """Several pairs: recall weighted by each pair's query windows; pairs kept in full."""
    out = {"model": reports[0]["model"], "pairs": reports}

    def queries(r: dict, key: str) -> int:
        # a baseline ranked outside the stream (SeqSLAM) ranks the sequence's windows
        return r.get(key.removesuffix("recall") + "queries", r["queries"])

    for key in [k for k in reports[0] if k.endswith("recall")]:
        total = sum(queries(r, key) for r in reports)
        out[key] = {rule: {k: sum(r[key][rule][k] * queries(r, key) for r in reports) / total
                           for k in by_k}
                    for rule, by_k in reports[0][key].items()}
    for key in ("window", "ground_truth", "baselines"):
        if key in reports[0]:
            out[key] = reports[0][key]
    return out


def format_recalls(report: dict) -> str:
    """The printed table: one row per method, one column group per rule, and what
    each rule accepts."""
    gt = report["ground_truth"]
    lines = [f"ground truth: {_criterion(report)}"]
    for rule, facts in gt.get("rules", {}).items():
        units = {"frames": "frame(s)", "m": "m"}
        offset = ", ".join(f"{v} {units[k.removeprefix('max_last_frame_offset_')]}"
                           for k, v in facts.items() if k.startswith("max_last_frame_offset"))
        lines.append(f"  {rule:>8}: {facts['description']}; accepts a last frame up to "
                     f"{offset} away")
    methods = _methods(report)
    methods.update({k: v for k, v in (("forward_blocks_recall", "forward blocks"),
                                      ("reversed_recall", "reversed blocks")) if k in report})
    rules = list(report["recall"])
    ks = list(report["recall"][rules[0]])
    width = max(len(label) for label in methods.values())
    cell = 6
    lines.append(" " * (width + 2) + "  ".join(f"{rule + ' rule':<{(cell + 1) * len(ks) - 1}}"
                                              for rule in rules))
    lines.append(" " * (width + 2) + "  ".join(" ".join(f"{'R@' + k:>{cell}}" for k in ks)
                                              for _ in rules))
    for key, label in methods.items():
        cells = "  ".join(" ".join(f"{report[key][rule][k]:>{cell}.3f}" for k in ks)
                          for rule in rules)
        lines.append(f"{label:>{width}}  {cells}")
    for baseline in report.get("baselines", {}).values():
        if not baseline["parameters"]:
            continue
        values = ", ".join(f"{k} {v['value']}" for k, v in baseline["parameters"].items())
        lines.append(f"{baseline['label']}: {values} (sources in the report)")
    return "\n".join(lines)
