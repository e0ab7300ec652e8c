"""seqvpr train: run (or resume) a training described by a YAML config."""

from __future__ import annotations

import argparse
import json
import os

from ..limits import COUNT


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a sequence model from a YAML config",
                       description="Triplet training with cached hard-negative mining (and the "
                                   "JIST image branch when enabled), validation Recall@5 with "
                                   "early stopping, a checkpoint every epoch. Multi-process: "
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
    summary = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":  # torchrun: one report, from rank 0
        return 0
    last = summary["history"][-1]["val_recall"]
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    print(f"validation R@1 {last['1']:.3f} R@5 {last['5']:.3f} after {summary['epochs']} epochs; "
          f"best model -> {summary['best_model']}")
    return 0
