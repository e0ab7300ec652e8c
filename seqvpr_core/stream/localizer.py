"""The streaming localizer: the one path every mode runs through.

frames -> encoder (each frame once) -> feature ring -> window -> aggregator
-> map search / add -> loop-closure gate. ``seqvpr build-map``, ``localize``,
``eval``, the demo and the ROS node all drive this class; none has its own
copy of the path.

Modes:
- ``mapping``: every window is added to the map, nothing is searched.
- ``localize``: every window is searched in a read-only map.
- ``slam``: every window is searched among map entries that ended before
  the recent past, then added to the map.

What the stream takes, and what it does with anything else (counted in
:class:`StreamStats`, which the ROS node reports in its diagnostics):

- frames: numpy uint8 RGB [H, W, 3] (any strides, e.g. a ``bgr[..., ::-1]`` view);
  None, another dtype or shape, an empty or oversized frame is a ValueError naming
  the frame; an empty batch yields nothing;
- stamps: whole nanoseconds; a stamp earlier than the previous frame's (a clock
  reset, a replayed bag) restarts the windows, so no window spans the jump: said
  once in the log, counted in ``time_resets``; an equal stamp is kept and counted in
  ``duplicate_stamps`` (a camera stamping coarsely, or a redelivered frame);
- poses: (x, y, heading); x and y both NaN is the unknown pose; any other non-finite
  x or y also makes the pose unknown (never a valid pose in the map), counted in
  ``invalid_poses``; a non-finite heading is unknown (nan).
"""

from __future__ import annotations

import bisect
import logging
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..data.images import check_frame
from ..data.poses import Pose
from ..limits import NON_NEGATIVE_COUNT, SECONDS, TOP_K
from ..maps import Keyframe, Match, PlaceMap
from ..models import SequenceModel
from .gate import GateConfig, LoopClosure, LoopClosureGate
from .ring import FeatureRing
from .window import WindowConfig, check_window

LOG = logging.getLogger(__name__)

MODES = ("mapping", "localize", "slam")


@dataclass(frozen=True)
class LocalizerConfig:
    mode: str = "localize"
    window: WindowConfig = field(default_factory=WindowConfig)
    top_k: int = 5
    # slam: a map entry is a candidate only if it ended this long before the
    # query window began, and is not among the newest ``exclude_recent_keyframes``.
    exclude_recent_s: float = 0.0
    exclude_recent_keyframes: int = 0
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        TOP_K.check("top_k", self.top_k)
        SECONDS.check("exclude_recent_s", self.exclude_recent_s)
        NON_NEGATIVE_COUNT.check("exclude_recent_keyframes", self.exclude_recent_keyframes)


@dataclass
class StreamStats:
    """What the stream repaired since it was made (see the module docstring)."""

    frames: int = 0
    time_resets: int = 0  # a stamp before the previous frame's: the windows restarted
    duplicate_stamps: int = 0  # a stamp equal to the previous frame's (kept)
    invalid_poses: int = 0  # a non-finite position: stored as unknown


@dataclass(frozen=True)
class FrameInfo:
    index: int
    stamp_ns: int
    name: str = ""
    pose: Pose | None = None
    source: str = ""


@dataclass
class WindowResult:
    """What one window produced. ``matches`` is empty in mapping mode."""

    frames: list[FrameInfo]
    descriptor: np.ndarray  # float32 [descriptor_dim]
    matches: list[Match]
    loop_closure: LoopClosure | None = None
    keyframe_id: int | None = None  # id given to this window in the map (mapping, slam)

    @property
    def last(self) -> FrameInfo:
        return self.frames[-1]

    def keyframe(self) -> Keyframe:
        first, last = self.frames[0], self.frames[-1]
        x, y, heading = last.pose if last.pose is not None else (math.nan,) * 3
        return Keyframe(first.stamp_ns, last.stamp_ns, len(self.frames), first.index,
                        last.index, last.name, x, y, heading, last.source)


class StreamingLocalizer:
    """Feed frames one at a time (``step``) or in batches (``feed``); get a
    :class:`WindowResult` for every window that completes."""

    def __init__(self, model: SequenceModel, place_map: PlaceMap, config: LocalizerConfig) -> None:
        w = config.window
        check_window(model, w)
        place_map.check_model(model.fingerprint(), model.descriptor_dim)
        self.model, self.map, self.config = model.eval(), place_map, config
        self.ring: FeatureRing[FrameInfo] = FeatureRing(w.max_len, model.frame_shape,
                                                        model.device, model.dtype)
        # a revisit moves on one map entry per window when the map has the query's stride
        map_stride = (place_map.window or {}).get("stride", w.stride)
        self.gate = LoopClosureGate(config.gate, advance=w.stride / map_stride)
        self.stats = StreamStats()
        self._seen = 0  # frames since the last reset: drives the windows
        self._frames = 0  # frames ever fed: default frame indices stay unique
        self._last_stamp: int | None = None
        self._first_own_id = len(place_map)  # slam: entries before this are a prior map
        # slam: end stamps of our own entries from id _stamped_from on, increasing; after
        # the clock went back, every entry before _stamped_from is older than all of them
        self._stamped_from = self._first_own_id
        self._own_end_ns: list[int] = []

    def reset(self) -> None:
        """Forget the stream (e.g. after a gap); the map is kept."""
        self._restart_windows()
        self._last_stamp = None

    def _restart_windows(self) -> None:
        self.ring.clear()
        self.gate.reset()
        self._seen = 0

    def step(self, frame: np.ndarray, stamp_ns: int, pose: Pose | None = None,
             name: str = "", index: int | None = None, source: str = "") -> WindowResult | None:
        """One uint8 RGB [H, W, 3] frame in; a result when a window completes."""
        results = self.feed([frame], [stamp_ns], [pose], [name],
                            None if index is None else [index], source)
        return results[0] if results else None

    def feed(self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int],
             poses: Sequence[Pose | None] | None = None, names: Sequence[str] | None = None,
             indices: Sequence[int] | None = None, source: str = "") -> list[WindowResult]:
        """A batch of frames, encoded in one pass, then pushed in order."""
        n = len(frames)
        for what, values in (("stamps", stamps_ns), ("poses", poses), ("names", names),
                             ("indices", indices)):
            if values is not None and len(values) != n:
                raise ValueError(f"{n} frames but {len(values)} {what}")
        if n == 0:
            return []
        frames = [check_frame(f, f"frame {i} of the batch") for i, f in enumerate(frames)]
        infos = [FrameInfo(
            index=int(indices[i]) if indices is not None else self._frames + i,
            stamp_ns=_stamp_ns(stamps_ns[i], i),
            name=names[i] if names is not None else "",
            pose=poses[i] if poses is not None else None,
            source=source,
        ) for i in range(n)]
        features = self.model.encode_frames(frames)
        return self.push_features(features, infos)

    def push_features(self, features: torch.Tensor,
                      infos: Iterable[FrameInfo]) -> list[WindowResult]:
        """Already-encoded frame features [N, *frame_shape] in stream order."""
        infos = [self._with_checked_pose(info) for info in infos]  # before any is pushed
        results = []
        for feature, info in zip(features, infos, strict=True):
            self._check_time(info)
            self.ring.push(feature, info)
            self._seen += 1
            self._frames += 1
            self.stats.frames += 1
            length = self.config.window.length_at(self._seen)
            if length is not None:
                results.append(self._on_window(length))
        return results

    def _check_time(self, info: FrameInfo) -> None:
        """Compare a frame's stamp with the previous one: the windows restart when time
        went back; an equal stamp is counted."""
        last, stamp = self._last_stamp, info.stamp_ns
        if last is not None and stamp < last:
            self.stats.time_resets += 1
            if self.stats.time_resets == 1:
                LOG.warning("%s: time went backwards (stamp %d ns after %d ns): the windows "
                            "restart; further jumps are counted (stats.time_resets) without "
                            "this warning", info.source or "stream", stamp, last)
            self._restart_windows()
        elif stamp == last:
            self.stats.duplicate_stamps += 1
            if self.stats.duplicate_stamps == 1:
                LOG.warning("%s: two frames share stamp %d ns; both are kept, further "
                            "duplicates are counted (stats.duplicate_stamps)",
                            info.source or "stream", stamp)
        self._last_stamp = stamp

    def _with_checked_pose(self, info: FrameInfo) -> FrameInfo:
        """``info`` whose pose is finite or None (see the module docstring)."""
        pose = info.pose
        if pose is None:
            return info
        try:
            x, y, heading = (float(v) for v in pose)
        except (TypeError, ValueError):
            raise ValueError(f"pose of frame {info.index} must be (x, y, heading) numbers, "
                             f"got {pose!r}") from None
        if math.isnan(x) and math.isnan(y):
            return replace(info, pose=None)  # unknown, as documented
        if not (math.isfinite(x) and math.isfinite(y)):
            self.stats.invalid_poses += 1
            if self.stats.invalid_poses == 1:
                LOG.warning("frame %d has a non-finite pose %s: stored without a pose; "
                            "further ones are counted (stats.invalid_poses)", info.index, pose)
            return replace(info, pose=None)
        return replace(info, pose=(x, y, heading if math.isfinite(heading) else math.nan))

    def _on_window(self, length: int) -> WindowResult:
        feats, infos = self.ring.last(length)
        with torch.inference_mode():
            descriptor = self.model.aggregate(feats[None])[0].float().cpu().numpy()
        result = WindowResult(infos, descriptor, [])
        mode, end_ns = self.config.mode, infos[-1].stamp_ns
        if self._own_end_ns and end_ns < self._own_end_ns[-1]:
            # the clock went back (detected, or after reset()): every entry so far is older
            self._stamped_from, self._own_end_ns = len(self.map), []
        if mode != "mapping":
            max_id = self._candidate_limit(infos[0].stamp_ns) if mode == "slam" else None
            result.matches = self.map.matches(descriptor, self.config.top_k, max_id)
            result.loop_closure = self.gate.update(result.matches, infos[-1].stamp_ns,
                                                   infos[-1].index)
        if mode != "localize":
            result.keyframe_id = len(self.map)
            self.map.add(descriptor[None], [result.keyframe()])
            self._own_end_ns.append(end_ns)
        return result

    def _candidate_limit(self, window_start_ns: int) -> int:
        """Ids below the returned value may match: entries that ended before the
        exclusion period preceding this window, minus the newest few."""
        cutoff_ns = window_start_ns - round(self.config.exclude_recent_s * 1e9)
        # strictly before the cutoff, so windows sharing frames never match
        limit = self._stamped_from + bisect.bisect_left(self._own_end_ns, cutoff_ns)
        limit = min(limit, len(self.map) - self.config.exclude_recent_keyframes)
        return max(limit, self._first_own_id)


def _stamp_ns(value: object, i: int) -> int:
    """A frame stamp as whole nanoseconds; NaN, infinities and non-numbers refused."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value):
        return round(value)
    raise ValueError(f"stamp of frame {i} of the batch must be whole nanoseconds, got "
                     f"{value!r}")
