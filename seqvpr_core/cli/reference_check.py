"""seqvpr reference-check: our models against the authors' code, on reference fixtures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("reference-check", help="check models against the authors' outputs",
                       description="For each fixture folder (checkpoint.pth in the authors' "
                                   "layout, io.pt with inputs and the authors' outputs, "
                                   "fixture.json with the tolerances): convert the checkpoint, "
                                   "run our model on the inputs and print, per output, the "
                                   "largest absolute difference and its tolerance. Exit status "
                                   "0 only if every output of every fixture is within it.")
    p.add_argument("fixtures", nargs="+", metavar="DIR",
                   help="fixture folders (plain files, e.g. the README a shell glob of "
                        "the folders' parent brings along, are skipped)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..convert.reference import check_fixture

    failed = 0
    folders = [f for f in args.fixtures if not Path(f).is_file()]
    for skipped in sorted(set(args.fixtures) - set(folders)):
        print(f"{skipped}: skipped (a file, not a fixture folder)")
    for folder in folders:
        try:
            checks = check_fixture(folder)
        except Exception as exc:  # noqa: BLE001  (one bad fixture must not hide the others)
            print(f"{folder}: FAIL: {type(exc).__name__}: {exc}")
            failed += 1
            continue
        bad = [c for c in checks if not c.ok]
        failed += bool(bad)
        print(f"{folder}: {'ok' if not bad else 'FAIL'} ({len(checks) - len(bad)}/"
              f"{len(checks)} outputs within tolerance)")
        for c in checks:
            print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name:<44} max|diff| {c.max_abs_diff:.3g}"
                  f"  atol {c.atol:.3g}{'  ' + c.note if c.note else ''}")
    if failed:
        print(f"{failed} of {len(folders)} fixtures differ from the authors' outputs",
              file=sys.stderr)
        return 1
    return 0
