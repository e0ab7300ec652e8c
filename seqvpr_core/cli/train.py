"""seqvpr train: run (or resume) a training described by a YAML config."""

from __future__ import annotations

import argparse
import json
import os

from ..limits import COUNT


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a sequence model from a YAML config",
                       description="Triplet training with cached hard-negative mining (and the "
                                   "JIST image branch when enabled), validation Recall@K with "
                                   "early stopping (one line per epoch; the untrained start is "
                                   "epoch 0 and competes for best.pt), a checkpoint every "
                                   "epoch. Multi-process: "
                                   "torchrun --nproc_per_node N -m seqvpr_core.cli.main train "
                                   "--config FILE.")
    p.add_argument("--config", required=True, help="training config (YAML), see config/train/")
    p.add_argument("--resume", action="store_true",
                   help="continue from <output>/last.ckpt exactly where it stopped")
    p.add_argument("--epochs", type=COUNT.parse, help="override optim.epochs of the config")
    p.add_argument("--output", help="override the config's output folder (a new or empty "
                                    "folder, or one seqvpr train wrote)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train import load_config, train

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.optim.epochs = args.epochs
    if args.output:
        from pathlib import Path
        cfg.output = str(Path(args.output).resolve())
    from tqdm import tqdm

    summary = train(cfg, resume=args.resume, echo=tqdm.write)  # lines above the bar
    if os.environ.get("RANK", "0") != "0":  # torchrun: one report, from rank 0
        return 0
    best, last = summary["best_val_recall"], summary["history"][-1]["val_recall"]
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    start = " (the untrained start: training did not improve on it)" \
        if summary["best_epoch"] == 0 else ""
    print(f"best model: epoch {summary['best_epoch']}{start}, validation "
          f"({summary['validation_rule']} rule) R@1 {best['1']:.3f} R@5 {best['5']:.3f} "
          f"-> {summary['best_model']}; last epoch {summary['epochs']}: R@1 {last['1']:.3f} "
          f"R@5 {last['5']:.3f}")
    return 0
