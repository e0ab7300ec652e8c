"""A traversal: one pass along a route, as ordered frames with stamps and poses."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..inputs import InputError, describe_os_error, directory, file_kind, read_text
from .images import IMAGE_SUFFIXES, read_image

LOG = logging.getLogger(__name__)

POSES_FILE = "poses.csv"
DEFAULT_PERIOD_NS = 1_000_000_000  # image folders without stamps: 1 frame per second


@dataclass
class Traversal:
    """Ordered frames of one pass.

    ``positions`` is float64 [N, 2] (metric x, y) or None; ``headings`` degrees [N]
    or None. Frame-aligned traversals (Nordland) carry no positions and are
    matched by index. ``sequence_ids`` (int64 [N] or None) marks datasets made of
    many short recordings (MSLS sequences, nuScenes scenes) kept in one traversal:
    a new sequence starts wherever the id changes, and no window may span two.
    """

    name: str
    paths: list[Path]
    stamps_ns: np.ndarray  # int64 [N]
    positions: np.ndarray | None = None
    headings: np.ndarray | None = None
    sequence_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def pose(self, i: int) -> tuple[float, float, float] | None:
        if self.positions is None:
            return None
        heading = float(self.headings[i]) if self.headings is not None else float("nan")
        return float(self.positions[i, 0]), float(self.positions[i, 1]), heading

    def subset(self, start: int, stop: int) -> Traversal:
        sl = slice(start, stop)
        return Traversal(self.name, self.paths[sl], self.stamps_ns[sl],
                         None if self.positions is None else self.positions[sl],
                         None if self.headings is None else self.headings[sl],
                         None if self.sequence_ids is None else self.sequence_ids[sl])

    def batches(self, batch_size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield (first index, decoded frames) in order; decode errors name the file."""
        for start in range(0, len(self), batch_size):
            yield start, [read_image(p) for p in self.paths[start:start + batch_size]]


def concat_traversals(name: str, parts: list[Traversal]) -> Traversal:
    """Several recordings as one traversal whose ``sequence_ids`` number the parts, so
    one map holds them all while windows (and the evaluation stream) restart at
    every part. Positions/headings are kept only when every part has them."""
    if not parts:
        raise ValueError(f"traversal {name!r} has no sequences to concatenate")

    def stacked(field: str) -> np.ndarray | None:
        values = [getattr(t, field) for t in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Traversal(name, [p for t in parts for p in t.paths],
                     np.concatenate([t.stamps_ns for t in parts]).astype(np.int64),
                     stacked("positions"), stacked("headings"),
                     np.repeat(np.arange(len(parts), dtype=np.int64), [len(t) for t in parts]))


def read_image_folder(folder: str | os.PathLike) -> Traversal:
    """Images of a folder in sorted file-name order.

    An optional ``poses.csv`` (columns ``name,stamp,x,y[,heading]``; stamp in
    seconds, x/y in metres, heading in degrees) supplies stamps and positions;
    otherwise frames are stamped one second apart. Entries named like images that
    are not regular files (directories, FIFOs, broken or looping links) are skipped
    with a warning: reading a FIFO would block forever.
    """
    folder = directory(folder, "image folder")
    paths = image_files(folder)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    stamps = np.arange(len(paths), dtype=np.int64) * DEFAULT_PERIOD_NS
    positions = headings = None
    poses_file = folder / POSES_FILE
    if os.path.lexists(poses_file):
        stamps, positions, headings = _read_poses(poses_file, [p.name for p in paths])
    return Traversal(folder.name, paths, stamps, positions, headings)


def image_files(folder: Path) -> list[Path]:
    """The regular files of ``folder`` named like images, sorted by name; entries that
    only look like images (directories, FIFOs, broken or looping links) are skipped with
    a warning: reading a FIFO would block forever."""
    try:
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise InputError(f"cannot list image folder {folder}: {describe_os_error(exc)}") \
            from None
    paths, skipped = [], []
    for p in entries:
        try:
            mode = p.stat().st_mode
            if stat.S_ISREG(mode):
                paths.append(p)
                continue
            skipped.append(f"{p.name} ({file_kind(mode)})")
        except OSError as exc:
            skipped.append(f"{p.name} ({describe_os_error(exc)})")
    if skipped:
        LOG.warning("%s: skipped %d entries named like images that are not image files: %s",
                    folder, len(skipped), ", ".join(skipped[:3])
                    + (", ..." if len(skipped) > 3 else ""))
    return paths


def _read_poses(path: Path, names: list[str]):
    """stamps int64 [N] ns, positions float [N, 2], headings [N] or None, of ``names``;
    errors name the file, the line and the column."""
    text = read_text(path, "poses file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"name", "stamp", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path} lacks columns {sorted(missing)}; expected "
                             "name,stamp,x,y[,heading]")
        rows = {}
        for row in reader:
            rows[row["name"]] = (reader.line_num, row)
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    absent = [n for n in names if n not in rows]
    if absent:
        raise InputError(f"{path} has no row for {len(absent)} image(s), e.g. {absent[0]!r}")

    def number(name: str, column: str, optional: bool = False) -> float:
        line, row = rows[name]
        value = row.get(column)
        if optional and value in (None, ""):
            return math.nan
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{path}:{line}: {column} of {name} must be a number, got "
                             f"{value!r}") from None
        if not math.isfinite(x):
            raise InputError(f"{path}:{line}: {column} of {name} must be finite, got "
                             f"{value!r} (leave heading empty when unknown)")
        return x

    stamps = np.array([round(number(n, "stamp") * 1e9) for n in names], dtype=np.int64)
    positions = np.array([[number(n, "x"), number(n, "y")] for n in names])
    headings = np.array([number(n, "heading", optional=True) for n in names])
    return stamps, positions, (None if np.isnan(headings).any() else headings)
