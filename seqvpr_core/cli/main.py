"""Entry point of the ``seqvpr`` command.

Adding a subcommand: a module in this package with ``add_parser(sub)``, which
declares its options, and ``run(args) -> int``, which does the work; list it in
SUBCOMMANDS. ``seqvpr --help`` (and every ``COMMAND --help``) builds all the
parsers, so a subcommand module imports only light modules at its top (argparse,
pathlib, :mod:`seqvpr_core.catalog` for names and choices, :mod:`.common`) and
imports torch, numpy, FAISS, OpenCV and the library's heavy packages inside
``run`` and the helpers it calls; ``test_cli_checks.py`` runs every ``--help`` in a
fresh interpreter and fails if one of them is imported.

Exit codes: 0 done, 2 refused (bad input, bad option, a damaged file, an output that
must not be replaced, a full disk: one line says what and where), 1 an internal
error (a bug: one line, and ``--debug`` shows the traceback), 130 interrupted.
No traceback is printed without ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..limits import THREADS
from . import build_map, convert, demo, eval, localize, models, reference_check, train
from .common import UsageError

SUBCOMMANDS = (demo, build_map, localize, eval, models, train, convert, reference_check)
# what bad input and a bad environment raise: reported in one line, exit 2
# (RuntimeError: torch, FAISS and ONNX Runtime failing on what they were given or on
# the machine: an allocation, a device)
REFUSED = (ValueError, OSError, ImportError, MemoryError, RuntimeError, UsageError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqvpr",
        description="Sequential visual place recognition: build maps, localize image "
                    "streams and evaluate sequence descriptors.")
    parser.add_argument("--version", action="version", version=f"seqvpr {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (for bug reports)")
    parser.add_argument("--threads", type=THREADS.parse, default=None, metavar="N",
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
    try:
        if args.threads is not None:
            from .common import set_threads

            set_threads(args.threads)
        return args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"seqvpr {args.command}: interrupted", file=sys.stderr)
        return 130
    except REFUSED as exc:
        # bad input, damaged files, missing weights, refused outputs: one clear line
        if args.debug:
            raise
        print(f"seqvpr {args.command}: error: {_describe(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001  (a bug: still no traceback without --debug)
        if args.debug:
            raise
        print(f"seqvpr {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(a bug in seqvpr; rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, MemoryError) or "can't allocate memory" in text \
            or "out of memory" in text.lower():
        first = text.splitlines()[0] if text else ""
        return f"out of memory{': ' + first if first else ''} (a smaller --batch-size, " \
            "window or --top-k needs less)"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
