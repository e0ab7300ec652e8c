"""Entry point of the ``seqvpr`` command.

Adding a subcommand: a module in this package with ``add_parser(sub)``, which
declares its options, and ``run(args) -> int``, which does the work; list it in
SUBCOMMANDS. ``seqvpr --help`` (and every ``COMMAND --help``) builds all the
parsers, so a subcommand module imports only light modules at its top (argparse,
pathlib, :mod:`seqvpr_core.catalog` for names and choices, :mod:`.common`) and
imports torch, numpy, FAISS, OpenCV and the library's heavy packages inside
``run`` and the helpers it calls; ``test_cli_checks.py`` runs every ``--help`` in a
fresh interpreter and fails if one of them is imported.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import build_map, convert, demo, eval, localize, models, reference_check, train

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
        from .common import set_threads

        set_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        # bad input, damaged files, missing weights: one clear line, no traceback
        print(f"seqvpr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
