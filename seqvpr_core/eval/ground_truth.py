"""The seq2seq ground truth of the seq-VPR papers.

A query window matches a map window when any frame of one is within the
radius (metres) or the frame tolerance (frame-aligned traversals such as
Nordland) of any frame of the other. With ``max_heading_deg`` (nuScenes) the
two frames must also face within that angle, so a place seen from the
opposite lane is not a positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..limits import DEGREES, METRES, NON_NEGATIVE_COUNT


@dataclass(frozen=True)
class GroundTruth:
    """Exactly one of ``tolerance`` (frames) or ``radius`` (metres); optionally a
    heading limit (degrees) on top of the radius."""

    tolerance: int | None = None
    radius: float | None = None
    max_heading_deg: float | None = None

    def __post_init__(self) -> None:
        if (self.tolerance is None) == (self.radius is None):
            raise ValueError("ground truth needs exactly one of a frame tolerance or a radius")
        if self.max_heading_deg is not None and self.radius is None:
            raise ValueError("a heading limit needs a radius ground truth (positions)")
        for name, value, limit in (("tolerance", self.tolerance, NON_NEGATIVE_COUNT),
                                   ("radius", self.radius, METRES),
                                   ("max_heading_deg", self.max_heading_deg, DEGREES)):
            if value is not None:
                limit.check(f"ground truth {name}", value)

    def describe(self) -> dict:
        if self.tolerance is not None:
            return {"tolerance_frames": self.tolerance}
        out: dict = {"radius_m": self.radius}
        if self.max_heading_deg is not None:
            out["max_heading_deg"] = self.max_heading_deg
        return out


def window_positives(query_windows: np.ndarray, db_windows: np.ndarray, n_db_frames: int,
                     gt: GroundTruth, query_positions: np.ndarray | None = None,
                     db_positions: np.ndarray | None = None,
                     query_headings: np.ndarray | None = None,
                     db_headings: np.ndarray | None = None) -> list[np.ndarray]:
    """Positive map-window ids of every query window.

    ``query_windows`` / ``db_windows``: int [W, 2] inclusive (first, last) frame
    indices into their traversals. Returns one int64 array per query window.
    """
    db_first, db_last = db_windows[:, 0], db_windows[:, 1]
    positives = []
    for first, last in query_windows:
        near = _near_db_frames(first, last, n_db_frames, gt, query_positions, db_positions,
                               query_headings, db_headings)
        # a map window is positive when it contains a near frame: prefix sums give
        # the count of near frames inside every [first, last] interval at once
        csum = np.concatenate([[0], np.cumsum(near)])
        positives.append(np.flatnonzero(csum[db_last + 1] - csum[db_first] > 0))
    return positives


def _near_db_frames(first: int, last: int, n_db: int, gt: GroundTruth,
                    q_pos: np.ndarray | None, db_pos: np.ndarray | None,
                    q_head: np.ndarray | None = None, db_head: np.ndarray | None = None
                    ) -> np.ndarray:
    near = np.zeros(n_db, dtype=bool)
    if gt.tolerance is not None:
        near[max(0, first - gt.tolerance):max(0, last + gt.tolerance + 1)] = True
        return near
    if q_pos is None or db_pos is None:
        raise ValueError("a radius ground truth needs positions for both traversals")
    d2 = ((db_pos[None, :, :2] - q_pos[first:last + 1, None, :2]) ** 2).sum(-1)
    close = d2 <= gt.radius**2
    if gt.max_heading_deg is not None:
        if q_head is None or db_head is None:
            raise ValueError("a heading limit needs headings for both traversals")
        diff = np.abs((db_head[None, :] - q_head[first:last + 1, None] + 180.0) % 360.0 - 180.0)
        close &= diff <= gt.max_heading_deg
    return close.any(0)
