"""Loop-closure gate: a score threshold plus temporal consistency.

A single window's best match is often a perceptual alias; a true revisit
keeps matching neighbouring map entries window after window. The gate fires
only when ``consistency`` consecutive windows each have a top match scoring
at least ``threshold`` and consecutive top matches lie within ``tolerance``
map entries of each other.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..maps import Match


@dataclass(frozen=True)
class GateConfig:
    # Minimum score of the best match in the map's units (inner product for ip maps,
    # -squared L2 distance for l2 maps); -inf: none.
    threshold: float = -math.inf
    consistency: int = 1
    tolerance: int = 3

    def __post_init__(self) -> None:
        if self.consistency < 1:
            raise ValueError(f"consistency must be >= 1, got {self.consistency}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class LoopClosure:
    """A loop-closure candidate: the query window's newest frame and its match."""

    query_stamp_ns: int
    query_index: int
    match: Match
    consistent_windows: int


class LoopClosureGate:
    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self._history: deque[int] = deque(maxlen=config.consistency)

    def reset(self) -> None:
        self._history.clear()

    def update(self, matches: list[Match], stamp_ns: int, index: int) -> LoopClosure | None:
        """Feed one window's matches (best first); returns a candidate when the gate opens."""
        if not matches or matches[0].score < self.config.threshold:
            self._history.clear()
            return None
        best = matches[0]
        if self._history and abs(best.keyframe_id - self._history[-1]) > self.config.tolerance:
            self._history.clear()
        self._history.append(best.keyframe_id)
        if len(self._history) < self.config.consistency:
            return None
        return LoopClosure(stamp_ns, index, best, len(self._history))
