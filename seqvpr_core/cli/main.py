"""Entry point of the ``seqvpr`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import build_map, convert, demo, eval, localize, models, reference_check, train
from .common import set_threads

SUBCOMMANDS = (demo, build_map, localize, eval, models, train, convert, reference_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqvpr",
        description="Sequential visual place recognition: build maps, localize image "
                    "streams and evaluate sequence descriptors.")
    parser.add_argument("--version", action="version", version=f"seqvpr {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch and FAISS (default: theirs; on a shared or "
                             "small CPU, 1 avoids thread contention on small frames)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        set_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        # bad input, damaged files, missing weights: one clear line, no traceback
        print(f"seqvpr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
