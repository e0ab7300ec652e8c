"""A traversal: one pass along a route, as ordered frames with stamps and poses."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import IMAGE_SUFFIXES, read_image

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
    otherwise frames are stamped one second apart.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    stamps = np.arange(len(paths), dtype=np.int64) * DEFAULT_PERIOD_NS
    positions = headings = None
    poses_file = folder / POSES_FILE
    if poses_file.is_file():
        stamps, positions, headings = _read_poses(poses_file, [p.name for p in paths])
    return Traversal(folder.name, paths, stamps, positions, headings)


def _read_poses(path: Path, names: list[str]):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"name", "stamp", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}; expected "
                             "name,stamp,x,y[,heading]")
        rows = {row["name"]: row for row in reader}
    absent = [n for n in names if n not in rows]
    if absent:
        raise ValueError(f"{path} has no row for {len(absent)} image(s), e.g. {absent[0]!r}")
    stamps = np.array([round(float(rows[n]["stamp"]) * 1e9) for n in names], dtype=np.int64)
    positions = np.array([[float(rows[n]["x"]), float(rows[n]["y"])] for n in names])
    headings = None
    if all(rows[n].get("heading") not in (None, "") for n in names):
        headings = np.array([float(rows[n]["heading"]) for n in names])
    return stamps, positions, headings
