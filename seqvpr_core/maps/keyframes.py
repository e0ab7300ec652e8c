"""Per-entry metadata of a map, stored column-wise (cheap at a million rows)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("id", "start_ns", "end_ns", "length", "first_index", "last_index", "name",
           "x", "y", "heading", "source")


@dataclass(frozen=True)
class Keyframe:
    """One map entry: the window that produced it. Pose is that of its last frame."""

    start_ns: int
    end_ns: int
    length: int
    first_index: int
    last_index: int
    name: str = ""
    x: float = math.nan
    y: float = math.nan
    heading: float = math.nan
    source: str = ""

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise ValueError(f"keyframe {self.name or self.last_index!r} ends at "
                             f"{self.end_ns} ns, before its start {self.start_ns} ns")
        if self.length < 1:
            raise ValueError(f"keyframe {self.name or self.last_index!r} has length "
                             f"{self.length}; a window holds at least one frame")
        if math.isinf(self.x) or math.isinf(self.y) or math.isinf(self.heading):
            raise ValueError(f"keyframe {self.name or self.last_index!r} has an infinite "
                             f"pose ({self.x}, {self.y}, {self.heading}); unknown is nan")

    @property
    def has_pose(self) -> bool:
        return not (math.isnan(self.x) or math.isnan(self.y))


class KeyframeTable:
    """Append-only columns; row i describes FAISS id i."""

    _INT = ("start_ns", "end_ns", "length", "first_index", "last_index")
    _FLOAT = ("x", "y", "heading")
    _STR = ("name", "source")

    def __init__(self) -> None:
        self._cols: dict[str, list] = {c: [] for c in self._INT + self._FLOAT + self._STR}

    def __len__(self) -> int:
        return len(self._cols["start_ns"])

    def append(self, kf: Keyframe) -> int:
        for col, values in self._cols.items():
            values.append(getattr(kf, col))
        return len(self) - 1

    def __getitem__(self, i: int) -> Keyframe:
        if not 0 <= i < len(self):
            raise IndexError(f"keyframe id {i} out of range (map has {len(self)})")
        return Keyframe(**{col: values[i] for col, values in self._cols.items()})

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self._cols[name])

    def save_csv(self, path: Path) -> None:
        # surrogateescape: file names that are not UTF-8 (Linux allows any bytes) round-trip
        with path.open("w", newline="", errors="surrogateescape") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for i in range(len(self)):
                kf = self[i]
                writer.writerow([i] + [_fmt(getattr(kf, c)) for c in COLUMNS[1:]])

    @classmethod
    def load_csv(cls, path: Path) -> KeyframeTable:
        table = cls()
        with path.open(newline="", errors="surrogateescape") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if tuple(header or ()) != COLUMNS:
                raise ValueError(f"{path}: header {header} is not {list(COLUMNS)}")
            for line, row in enumerate(reader, start=2):
                try:
                    if len(row) != len(COLUMNS) or int(row[0]) != len(table):
                        raise ValueError("malformed or out-of-order row")
                    values = dict(zip(COLUMNS, row, strict=True))
                    table.append(Keyframe(
                        **{c: int(values[c]) for c in cls._INT},
                        **{c: float(values[c]) if values[c] else math.nan for c in cls._FLOAT},
                        **{c: values[c] for c in cls._STR},
                    ))
                except ValueError as exc:
                    raise ValueError(f"{path}:{line}: {exc}: {row[:len(COLUMNS)]}") from None
        return table


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)
