"""What the node publishes, as plain values computed from a :class:`WindowResult`.

The node copies these into ROS messages field by field; everything that is a
decision (which stamp, which pose, whether LIO-SAM may see a closure) is here,
tested without ROS.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from seqvpr_core.maps import Keyframe
from seqvpr_core.stream import StreamStats, WindowResult

Pose = tuple[float, float, float]


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    """builtin_interfaces/Time (sec, nanosec) of a stamp in ns."""
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return sec, nsec


def yaw_quaternion(heading_deg: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation about z; identity when the heading is unknown."""
    if math.isnan(heading_deg):
        return 0.0, 0.0, 0.0, 1.0
    half = math.radians(heading_deg) / 2.0
    return 0.0, 0.0, math.sin(half), math.cos(half)


@dataclass(frozen=True)
class PoseFields:
    has_pose: bool
    x: float = 0.0
    y: float = 0.0
    quaternion: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)


def pose_fields(pose: Pose | None) -> PoseFields:
    if pose is None or math.isnan(pose[0]) or math.isnan(pose[1]):
        return PoseFields(False)
    return PoseFields(True, float(pose[0]), float(pose[1]), yaw_quaternion(pose[2]))


def keyframe_pose(kf: Keyframe) -> PoseFields:
    return pose_fields((kf.x, kf.y, kf.heading))


@dataclass(frozen=True)
class MatchFields:
    keyframe_id: int
    stamp_ns: int  # the map window's newest frame
    pose: PoseFields
    score: float
    rank: int


@dataclass(frozen=True)
class WindowFields:
    """PlaceMatchArray / SequenceDescriptor content of one window."""

    stamp_ns: int  # header stamp: the window's newest frame
    window_start_ns: int
    window_length: int
    matches: list[MatchFields]


def window_fields(result: WindowResult) -> WindowFields:
    return WindowFields(
        result.last.stamp_ns, result.frames[0].stamp_ns, len(result.frames),
        [MatchFields(m.keyframe_id, m.keyframe.end_ns, keyframe_pose(m.keyframe), float(m.score),
                     m.rank) for m in result.matches])


@dataclass(frozen=True)
class LoopFields:
    query_stamp_ns: int
    match_stamp_ns: int
    query_id: int  # the query window's map id in slam mode, else its newest frame's index
    match_id: int
    query_pose: PoseFields
    match_pose: PoseFields
    score: float
    consistent_windows: int


def loop_fields(result: WindowResult) -> LoopFields | None:
    lc = result.loop_closure
    if lc is None:
        return None
    kf = lc.match.keyframe
    query_id = result.keyframe_id if result.keyframe_id is not None else lc.query_index
    return LoopFields(lc.query_stamp_ns, kf.end_ns, query_id, lc.match.keyframe_id,
                      pose_fields(result.last.pose), keyframe_pose(kf), float(lc.match.score),
                      lc.consistent_windows)


def lio_sam_payload(result: WindowResult, first_own_id: int) -> list[float] | None:
    """LIO-SAM's ``lio_loop/loop_closure_detection`` data: [t_cur, t_prev] in seconds.

    LIO-SAM finds its own keyframes nearest to both times, so only a closure with
    a map entry this robot made in this run (id >= ``first_own_id``) qualifies;
    a prior map's stamps belong to another recording.
    """
    lc = result.loop_closure
    if lc is None or lc.match.keyframe_id < first_own_id:
        return None
    return [lc.query_stamp_ns * 1e-9, lc.match.keyframe.end_ns * 1e-9]


@dataclass
class Diagnostics:
    """Rates, latency from image stamp to publish, queue drops, map size."""

    window_s: float = 10.0
    _frames: deque = field(default_factory=deque)  # monotonic times of processed frames
    _windows: deque = field(default_factory=deque)
    _latency_ms: deque = field(default_factory=lambda: deque(maxlen=200))

    def frame(self, now: float | None = None) -> None:
        self._frames.append(time.monotonic() if now is None else now)

    def window(self, stamp_ns: int, now_ns: int, now: float | None = None) -> None:
        """A window was published at ROS time ``now_ns``; its newest image had ``stamp_ns``."""
        self._windows.append(time.monotonic() if now is None else now)
        self._latency_ms.append((now_ns - stamp_ns) / 1e6)

    def values(self, received: int, dropped: int, queued: int, map_size: int,
               now: float | None = None, stream: StreamStats | None = None) -> dict[str, str]:
        """Key/value pairs of the diagnostics status; ``stream``: the localizer's
        :class:`StreamStats` (time resets, duplicate stamps, invalid poses)."""
        now = time.monotonic() if now is None else now
        for q in (self._frames, self._windows):
            while q and q[0] < now - self.window_s:
                q.popleft()
        lat = sorted(self._latency_ms)
        return {
            "frame rate (Hz)": f"{len(self._frames) / self.window_s:.2f}",
            "window rate (Hz)": f"{len(self._windows) / self.window_s:.2f}",
            "latency median (ms)": f"{lat[len(lat) // 2]:.1f}" if lat else "n/a",
            "latency max (ms)": f"{lat[-1]:.1f}" if lat else "n/a",
            "frames received": str(received),
            "frames dropped": str(dropped),
            "queue length": str(queued),
            "map size": str(map_size),
            **({} if stream is None else {
                "time resets (stamps went back)": str(stream.time_resets),
                "duplicate stamps": str(stream.duplicate_stamps),
                "invalid poses dropped": str(stream.invalid_poses)}),
        }

    @staticmethod
    def level(received: int, dropped: int) -> tuple[int, str]:
        """(0 OK | 1 WARN, message): warn once more than 10% of frames were dropped."""
        if received and dropped / received > 0.1:
            return 1, f"overloaded: {dropped} of {received} frames dropped"
        return 0, "ok"
