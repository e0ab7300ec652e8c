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
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.poses import Pose
from ..maps import Keyframe, Match, PlaceMap
from ..models import SequenceModel
from .gate import GateConfig, LoopClosure, LoopClosureGate
from .ring import FeatureRing

LOG = logging.getLogger(__name__)

MODES = ("mapping", "localize", "slam")


@dataclass(frozen=True)
class WindowConfig:
    """Windows of ``min_len..max_len`` frames, one every ``stride`` new frames.

    A stream's first windows grow from ``min_len`` to ``max_len`` frames; after
    that every window has ``max_len``.
    """

    min_len: int = 5
    max_len: int = 5
    stride: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}..{self.max_len}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @classmethod
    def fixed(cls, length: int, stride: int = 1) -> WindowConfig:
        return cls(length, length, stride)

    def length_at(self, frames_seen: int) -> int | None:
        """Window length that ends at the ``frames_seen``-th frame, or None."""
        if frames_seen < self.min_len or (frames_seen - self.min_len) % self.stride:
            return None
        return min(frames_seen, self.max_len)


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
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.exclude_recent_s < 0 or self.exclude_recent_keyframes < 0:
            raise ValueError("loop exclusion must be >= 0")


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


def check_window(model: SequenceModel, window: WindowConfig) -> None:
    """Refuse windows the model cannot aggregate: a fixed-length model (cat, fc,
    mixer) takes one length, some (seqnet) a shortest one."""
    lo, hi = window.min_len, window.max_len
    if not model.variable_length and not (lo == hi == model.fixed_length):
        raise ValueError(
            f"model {model.name} needs windows of exactly {model.fixed_length} frames, "
            f"but the window is {lo}..{hi}; set both to "
            f"{model.fixed_length} or use a variable-length aggregator")
    if lo < model.min_length:
        raise ValueError(f"model {model.name} needs windows of at least {model.min_length} "
                         f"frames, but the shortest window is {lo}; raise --min-len")


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
        self.gate = LoopClosureGate(config.gate)
        self._seen = 0  # frames since the last reset: drives the windows
        self._frames = 0  # frames ever fed: default frame indices stay unique
        self._first_own_id = len(place_map)  # slam: entries before this are a prior map
        self._own_end_ns: list[int] = []

    def reset(self) -> None:
        """Forget the stream (e.g. after a gap); the map is kept."""
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
        if n == 0:
            return []
        if len(stamps_ns) != n:
            raise ValueError(f"{n} frames but {len(stamps_ns)} stamps")
        features = self.model.encode_frames(frames)
        infos = [FrameInfo(
            index=indices[i] if indices is not None else self._frames + i,
            stamp_ns=int(stamps_ns[i]),
            name=names[i] if names is not None else "",
            pose=poses[i] if poses is not None else None,
            source=source,
        ) for i in range(n)]
        return self.push_features(features, infos)

    def push_features(self, features: torch.Tensor,
                      infos: Iterable[FrameInfo]) -> list[WindowResult]:
        """Already-encoded frame features [N, *frame_shape] in stream order."""
        results = []
        for feature, info in zip(features, infos, strict=True):
            self.ring.push(feature, info)
            self._seen += 1
            self._frames += 1
            length = self.config.window.length_at(self._seen)
            if length is not None:
                results.append(self._on_window(length))
        return results

    def _on_window(self, length: int) -> WindowResult:
        feats, infos = self.ring.last(length)
        with torch.inference_mode():
            descriptor = self.model.aggregate(feats[None])[0].float().cpu().numpy()
        result = WindowResult(infos, descriptor, [])
        mode = self.config.mode
        if mode != "mapping":
            max_id = self._candidate_limit(infos[0].stamp_ns) if mode == "slam" else None
            result.matches = self.map.matches(descriptor, self.config.top_k, max_id)
            result.loop_closure = self.gate.update(result.matches, infos[-1].stamp_ns,
                                                   infos[-1].index)
        if mode != "localize":
            result.keyframe_id = len(self.map)
            self.map.add(descriptor[None], [result.keyframe()])
            self._own_end_ns.append(infos[-1].stamp_ns)
        return result

    def _candidate_limit(self, window_start_ns: int) -> int:
        """Ids below the returned value may match: entries that ended before the
        exclusion period preceding this window, minus the newest few."""
        cutoff_ns = window_start_ns - round(self.config.exclude_recent_s * 1e9)
        # strictly before the cutoff, so windows sharing frames never match
        n_old = bisect.bisect_left(self._own_end_ns, cutoff_ns)
        n_old = min(n_old, len(self._own_end_ns) - self.config.exclude_recent_keyframes)
        return self._first_own_id + max(n_old, 0)
