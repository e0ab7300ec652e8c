"""seqvpr convert: an author's released checkpoint -> an ordinary seqvpr model file."""

from __future__ import annotations

import argparse

from ..inputs import InputError, read_config_file, type_name
from ..outputs import MODEL, OutputPlan
from .common import LOG, UsageError

FORMATS_HELP = ("jist, cosplace, vg-transformers, seqnet, stformer, adapt-stformer, mixvpr, "
                "netvlad, dinov2 (`seqvpr convert --list` shows what this install converts)")


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="turn an author's checkpoint into a seqvpr model",
                       description="Read a checkpoint as the authors' training code wrote it "
                                   "(their key names, wrappers, numpy scalars; no pickled code "
                                   "is run) and write a seqvpr model file that build-map, "
                                   "localize, eval and the ROS node take like any other.")
    p.add_argument("checkpoint", nargs="?", help="the released file (.pth, .pth.tar, .ckpt)")
    p.add_argument("--from", dest="fmt", metavar="FORMAT", help=f"release format: {FORMATS_HELP}")
    p.add_argument("--config", help="YAML/JSON partial model config for what the file does not "
                                    "determine (e.g. the frame encoder of a head-only file, "
                                    "image size, window length)")
    p.add_argument("--out", help="seqvpr model file to write (.pt; replaces only a seqvpr "
                                 "model file)")
    p.add_argument("--list", action="store_true", help="list the formats and exit")
    p.set_defaults(run=run)


def _read_config(path: str | None) -> dict:
    if path is None:
        return {}
    config = read_config_file(path, "--config")
    if config is None:
        return {}
    where = f"--config {path}"
    if isinstance(config, dict) and "model" in config:  # a whole config: its model part
        config, where = config["model"], f"--config {path}: model"
    if not isinstance(config, dict):
        raise InputError(f"{where} must hold a mapping (a partial model config), got "
                         f"{type_name(config)}")
    return config


def run(args: argparse.Namespace) -> int:
    from ..convert import convert, list_formats

    if args.list:
        print("\n".join(list_formats()))
        return 0
    if not (args.checkpoint and args.fmt and args.out):
        raise UsageError("give CHECKPOINT, --from FORMAT and --out MODEL.pt (or --list)")
    out = OutputPlan().claim(args.out, MODEL, "--out")  # refused before any work
    model = convert(args.fmt, args.checkpoint, _read_config(args.config))
    model.save(out)
    LOG.info("converted %s (%s) to %s", args.checkpoint, args.fmt, args.out)
    print(f"{args.out}: {model.name}, {model.descriptor_dim}-d descriptors, "
          + ("any window length" if model.variable_length
             else f"windows of {model.fixed_length} frames"))
    return 0
