"""Loop-closure gate: a score threshold plus temporal consistency along the map.

A single window's best match is often a perceptual alias (a tunnel, a
station the train stands in, a forest that looks like every forest). A true
revisit keeps matching the map entries that follow each other as the query
moves on: one entry per window when query and map have the same stride. So
the gate opens only when ``consistency`` consecutive windows each have a top
match scoring at least ``threshold``, every step between two of those matches
moves forward along the map by 0 .. 2 x ``advance`` entries, and the whole
chain advanced ``(consistency - 1) x advance`` entries, give or take
``tolerance``. A chain that stands still (the same alias matched again and
again) or wanders is not a place.

Defaults come from ``benchmarks/loop_gate.py`` (Nordland revisits and cross-season
traversals, precision first): with them no stream there gave a false closure.
The chain's pace assumes the revisit moves through the map at the pace it was
recorded at (true with keyframes spaced by distance); raise ``tolerance`` for
revisits at other speeds, at the cost of more false closures.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..limits import COUNT, NON_NEGATIVE_COUNT, THRESHOLD

if TYPE_CHECKING:  # the gate's defaults are read without loading FAISS (seqvpr_ros.params)
    from ..maps import Match


@dataclass(frozen=True)
class GateConfig:
    # Minimum score of the best match in the map's units (inner product for ip maps,
    # -squared L2 distance for l2 maps); -inf: none.
    threshold: float = -math.inf
    consistency: int = 15
    tolerance: int = 1

    def __post_init__(self) -> None:
        # a NaN threshold would open the gate for every window
        THRESHOLD.check("gate threshold", self.threshold)
        COUNT.check("gate consistency", self.consistency)
        NON_NEGATIVE_COUNT.check("gate tolerance", self.tolerance)


@dataclass(frozen=True)
class LoopClosure:
    """A loop-closure candidate: the query window's newest frame and its match."""

    query_stamp_ns: int
    query_index: int
    match: Match
    consistent_windows: int


class LoopClosureGate:
    """Feed it every window's matches in stream order; it says when a loop closes.

    ``advance`` is how many map entries a revisit moves on per query window: 1
    when the map was built with the query's window stride (always in slam mode),
    ``query stride / map stride`` otherwise.
    """

    def __init__(self, config: GateConfig, advance: float = 1.0) -> None:
        if not advance > 0:
            raise ValueError(f"advance must be > 0 map entries per window, got {advance}")
        self.config = config
        self.advance = advance
        self._max_step = max(1, math.ceil(2 * advance))
        self._history: deque[int] = deque(maxlen=config.consistency)

    def reset(self) -> None:
        self._history.clear()

    def update(self, matches: list[Match], stamp_ns: int, index: int) -> LoopClosure | None:
        """Feed one window's matches (best first); returns a candidate when the gate opens."""
        if not matches or matches[0].score < self.config.threshold:
            self._history.clear()
            return None
        best = matches[0]
        if self._history and not 0 <= best.keyframe_id - self._history[-1] <= self._max_step:
            self._history.clear()
        self._history.append(best.keyframe_id)
        n = len(self._history)
        if n < self.config.consistency:
            return None
        moved = self._history[-1] - self._history[0]
        if abs(moved - (n - 1) * self.advance) > self.config.tolerance:
            return None
        return LoopClosure(stamp_ns, index, best, n)
