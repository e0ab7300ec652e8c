"""When a retrieved map window counts as correct: two rules over one criterion.

The criterion is a frame tolerance (frame-aligned traversals such as Nordland)
or a radius in metres (traversals with positions), optionally with a heading
limit (nuScenes: a place seen from the opposite lane is not a positive). The
rule says which frames it compares:

- ``seq2seq``, the seeds' rule: any frame of the query window near any frame
  of the map window. With L-frame windows it accepts map windows whose last
  frame is up to L - 1 frames (plus the tolerance) from the query's last frame.
- ``current``: the query window's last frame near the map window's last frame,
  i.e. the robot is where the match says it is *now*.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..limits import DEGREES, METRES, NON_NEGATIVE_COUNT


@dataclass(frozen=True)
class Rule:
    description: str
    # (first, last) query frames -> the frames compared with the map
    query_frames: Callable[[int, int], tuple[int, int]]
    # (near map frames [N] bool, first [W], last [W] map-window frames) -> positive ids
    match: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _any_frame(near: np.ndarray, db_first: np.ndarray, db_last: np.ndarray) -> np.ndarray:
    # prefix sums give the count of near frames inside every [first, last] at once
    csum = np.concatenate([[0], np.cumsum(near)])
    return np.flatnonzero(csum[db_last + 1] - csum[db_first] > 0)


def _last_frame(near: np.ndarray, db_first: np.ndarray, db_last: np.ndarray) -> np.ndarray:
    return np.flatnonzero(near[db_last])


RULES: dict[str, Rule] = {
    "current": Rule("the map window's last frame near the query window's last frame "
                    "(where the robot is now)", lambda first, last: (last, last), _last_frame),
    "seq2seq": Rule("any frame of the map window near any frame of the query window "
                    "(the seeds' rule)", lambda first, last: (first, last), _any_frame),
}


@dataclass(frozen=True)
class GroundTruth:
    """Exactly one of ``tolerance`` (frames) or ``radius`` (metres); optionally a
    heading limit (degrees) on top of the radius; the ``rule`` (:data:`RULES`)."""

    tolerance: int | None = None
    radius: float | None = None
    max_heading_deg: float | None = None
    rule: str = "seq2seq"

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
        if self.rule not in RULES:
            raise ValueError(f"unknown ground-truth rule {self.rule!r}; known: {list(RULES)}")

    def under(self, rule: str) -> GroundTruth:
        """The same criterion under another rule."""
        return dataclasses.replace(self, rule=rule)

    def criterion(self) -> dict:
        """The tolerance or radius (and heading limit), without the rule."""
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
    """Positive map-window ids of every query window under ``gt`` and its rule.

    ``query_windows`` / ``db_windows``: int [W, 2] inclusive (first, last) frame
    indices into their traversals. Returns one int64 array per query window.
    """
    rule = RULES[gt.rule]
    db_first, db_last = db_windows[:, 0], db_windows[:, 1]
    positives = []
    for first, last in query_windows:
        near = _near_db_frames(*rule.query_frames(int(first), int(last)), n_db_frames, gt,
                               query_positions, db_positions, query_headings, db_headings)
        positives.append(rule.match(near, db_first, db_last))
    return positives


def accepted_offset(query_windows: np.ndarray, db_windows: np.ndarray,
                    positives: list[np.ndarray], gt: GroundTruth,
                    query_positions: np.ndarray | None = None,
                    db_positions: np.ndarray | None = None) -> dict[str, float]:
    """How far from the query's last frame a match may end and still count: the
    largest offset, in frames (frame-aligned traversals) or metres (positions),
    between a query window's last frame and the last frame of one of its positives."""
    worst = 0.0
    for (_, last), pos in zip(query_windows, positives, strict=True):
        if not len(pos):
            continue
        ends = db_windows[pos, 1]
        if gt.tolerance is not None:
            worst = max(worst, float(np.abs(ends - last).max()))
        else:
            d = np.linalg.norm(db_positions[ends, :2] - query_positions[last, :2], axis=1)
            worst = max(worst, float(d.max()))
    if gt.tolerance is not None:
        return {"max_last_frame_offset_frames": int(worst)}
    return {"max_last_frame_offset_m": round(worst, 3)}


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
