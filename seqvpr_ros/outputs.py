"""What the node publishes, as plain values computed from a :class:`WindowResult`.

The node copies these into ROS messages field by field; everything that is a
decision (which stamp, which pose, whether LIO-SAM may see a closure) is here,
tested without ROS.
"""

from __future__ import annotations

import math
import re
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
    """Rates, latency from image stamp to publish, queue drops, rejected frames, map size."""

    window_s: float = 10.0
    rejected: int = 0  # frames that could not be used (malformed, unsupported), ever
    last_rejection: str = ""
    _frames: deque = field(default_factory=deque)  # monotonic times of processed frames
    _windows: deque = field(default_factory=deque)
    _rejections: deque = field(default_factory=deque)
    _latency_ms: deque = field(default_factory=lambda: deque(maxlen=200))

    def frame(self, now: float | None = None) -> None:
        self._frames.append(time.monotonic() if now is None else now)

    def window(self, stamp_ns: int, now_ns: int, now: float | None = None) -> None:
        """A window was published at ROS time ``now_ns``; its newest image had ``stamp_ns``."""
        self._windows.append(time.monotonic() if now is None else now)
        self._latency_ms.append((now_ns - stamp_ns) / 1e6)

    def reject(self, reason: str, now: float | None = None) -> None:
        """A received frame was not used, for ``reason``."""
        self.rejected += 1
        self.last_rejection = reason
        self._rejections.append(time.monotonic() if now is None else now)

    def _expire(self, now: float) -> None:
        for q in (self._frames, self._windows, self._rejections):
            while q and q[0] < now - self.window_s:
                q.popleft()

    def values(self, received: int, dropped: int, queued: int, map_size: int,
               now: float | None = None, stream: StreamStats | None = None) -> dict[str, str]:
        """Key/value pairs of the diagnostics status; ``stream``: the localizer's
        :class:`StreamStats` (time resets, duplicate stamps, invalid poses)."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        lat = sorted(self._latency_ms)
        return {
            "frame rate (Hz)": f"{len(self._frames) / self.window_s:.2f}",
            "window rate (Hz)": f"{len(self._windows) / self.window_s:.2f}",
            "latency median (ms)": f"{lat[len(lat) // 2]:.1f}" if lat else "n/a",
            "latency max (ms)": f"{lat[-1]:.1f}" if lat else "n/a",
            "frames received": str(received),
            "frames dropped": str(dropped),
            "frames rejected": str(self.rejected),
            "last rejection": self.last_rejection or "none",
            "queue length": str(queued),
            "map size": str(map_size),
            **({} if stream is None else {
                "time resets (stamps went back)": str(stream.time_resets),
                "duplicate stamps": str(stream.duplicate_stamps),
                "invalid poses dropped": str(stream.invalid_poses)}),
        }

    def level(self, received: int, dropped: int, now: float | None = None) -> tuple[int, str]:
        """(0 OK | 1 WARN, message): WARN once more than 10% of frames were dropped, or
        while frames were rejected within the last ``window_s``."""
        self._expire(time.monotonic() if now is None else now)
        problems = []
        if received and dropped / received > 0.1:
            problems.append(f"overloaded: {dropped} of {received} frames dropped")
        if self._rejections:
            problems.append(f"{len(self._rejections)} frames rejected in the last "
                            f"{self.window_s:g} s: {self.last_rejection}")
        return (1, "; ".join(problems)) if problems else (0, "ok")


class RejectionLog:
    """Which rejected frames to log: the first of each kind of problem at once, then one
    line per kind every ``period_s`` with how many came since (diagnostics count all).

    A kind is the reason with its numbers blanked, so a stream of truncated frames of
    varying size is one kind while a bad encoding next to it is another.
    """

    MAX_KINDS = 64  # reasons quote message fields: a bound on what a publisher can make us keep

    def __init__(self, period_s: float = 10.0) -> None:
        self.period_s = period_s
        self._kinds: dict[str, list] = {}  # kind -> [last logged (monotonic s), since then]

    def line(self, reason: str, now: float | None = None) -> str | None:
        now = time.monotonic() if now is None else now
        kind = re.sub(r"\d+", "#", reason)
        entry = self._kinds.get(kind)
        if entry is not None and now - entry[0] < self.period_s:
            entry[1] += 1
            return None
        if entry is None and len(self._kinds) >= self.MAX_KINDS:
            self._kinds.pop(next(iter(self._kinds)))
        since = entry[1] if entry is not None else 0
        self._kinds[kind] = [now, 0]
        return reason + (f" ({since} more like it since the last report)" if since else "")
