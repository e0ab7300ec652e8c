"""Keyframe spacing: which frames of a stream enter the pipeline.

A robot that stops, or a camera faster than the robot moves, produces many
near-identical frames; windows over them span no distance and match poorly.
Spacing keeps a frame only when the robot has moved ``min_distance_m`` and
``min_interval_s`` has passed since the last kept frame. The same rule runs
offline (rosbags) and online (the ROS node).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..limits import METRES, SECONDS
from .poses import Pose


@dataclass(frozen=True)
class KeyframeSpacing:
    """0 disables a criterion; with both at 0 every frame is kept."""

    min_distance_m: float = 0.0
    min_interval_s: float = 0.0

    def __post_init__(self) -> None:
        METRES.check("keyframe min_distance (m)", self.min_distance_m)
        SECONDS.check("keyframe min_interval (s)", self.min_interval_s)

    @property
    def enabled(self) -> bool:
        return self.min_distance_m > 0 or self.min_interval_s > 0

    def select(self, stamps_ns: Sequence[int], poses: Sequence[Pose | None]) -> list[int]:
        """Indices of the frames kept, in order (the first frame is always kept)."""
        selector = SpacingFilter(self)
        return [i for i, (s, p) in enumerate(zip(stamps_ns, poses, strict=True))
                if selector.accept(int(s), p)]


class SpacingFilter:
    """Online form of :class:`KeyframeSpacing`: ``accept`` one frame at a time.

    A frame without a pose passes the distance test (nothing to measure), so a
    short odometry outage does not stall the stream; the time test still applies.
    """

    def __init__(self, spacing: KeyframeSpacing) -> None:
        self.spacing = spacing
        self._last_ns: int | None = None
        self._last_xy: tuple[float, float] | None = None

    def reset(self) -> None:
        self._last_ns = self._last_xy = None

    def accept(self, stamp_ns: int, pose: Pose | None = None) -> bool:
        sp = self.spacing
        xy = None if pose is None or math.isnan(pose[0]) else (pose[0], pose[1])
        if self._last_ns is not None:
            if sp.min_interval_s > 0 and (stamp_ns - self._last_ns) < sp.min_interval_s * 1e9:
                return False
            if (sp.min_distance_m > 0 and xy is not None and self._last_xy is not None
                    and math.dist(xy, self._last_xy) < sp.min_distance_m):
                return False
        self._last_ns = stamp_ns
        if xy is not None:
            self._last_xy = xy
        return True
