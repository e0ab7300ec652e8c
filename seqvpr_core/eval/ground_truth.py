"""The seq2seq ground truth of the seq-VPR papers.

A query window matches a map window when any frame of one is within the
radius (metres) or the frame tolerance (frame-aligned traversals such as
Nordland) of any frame of the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroundTruth:
    """Exactly one of ``tolerance`` (frames) or ``radius`` (metres)."""

    tolerance: int | None = None
    radius: float | None = None

    def __post_init__(self) -> None:
        if (self.tolerance is None) == (self.radius is None):
            raise ValueError("ground truth needs exactly one of a frame tolerance or a radius")

    def describe(self) -> dict:
        if self.tolerance is not None:
            return {"tolerance_frames": self.tolerance}
        return {"radius_m": self.radius}


def window_positives(query_windows: np.ndarray, db_windows: np.ndarray, n_db_frames: int,
                     gt: GroundTruth, query_positions: np.ndarray | None = None,
                     db_positions: np.ndarray | None = None) -> list[np.ndarray]:
    """Positive map-window ids of every query window.

    ``query_windows`` / ``db_windows``: int [W, 2] inclusive (first, last) frame
    indices into their traversals. Returns one int64 array per query window.
    """
    db_first, db_last = db_windows[:, 0], db_windows[:, 1]
    positives = []
    for first, last in query_windows:
        near = _near_db_frames(first, last, n_db_frames, gt, query_positions, db_positions)
        # a map window is positive when it contains a near frame: prefix sums give
        # the count of near frames inside every [first, last] interval at once
        csum = np.concatenate([[0], np.cumsum(near)])
        positives.append(np.flatnonzero(csum[db_last + 1] - csum[db_first] > 0))
    return positives


def _near_db_frames(first: int, last: int, n_db: int, gt: GroundTruth,
                    q_pos: np.ndarray | None, db_pos: np.ndarray | None) -> np.ndarray:
    near = np.zeros(n_db, dtype=bool)
    if gt.tolerance is not None:
        near[max(0, first - gt.tolerance):max(0, last + gt.tolerance + 1)] = True
        return near
    if q_pos is None or db_pos is None:
        raise ValueError("a radius ground truth needs positions for both traversals")
    d2 = ((db_pos[None, :, :2] - q_pos[first:last + 1, None, :2]) ** 2).sum(-1)
    return (d2 <= gt.radius**2).any(0)
