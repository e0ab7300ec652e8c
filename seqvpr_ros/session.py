"""Build the streaming localizer the node drives, from validated settings (no rclpy)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from seqvpr_core.data import KeyframeSpacing, SpacingFilter
from seqvpr_core.data.images import check_frame
from seqvpr_core.data.poses import Pose
from seqvpr_core.data.rosbag import stamp_name
from seqvpr_core.maps import PlaceMap
from seqvpr_core.maps.indexes import index_spec
from seqvpr_core.models import SequenceModel, build_model
from seqvpr_core.stream import (
    GateConfig,
    LocalizerConfig,
    StreamingLocalizer,
    WindowConfig,
    WindowResult,
)

from .params import NodeSettings

LOG = logging.getLogger(__name__)


@dataclass
class Session:
    localizer: StreamingLocalizer
    spacing: SpacingFilter
    first_own_id: int  # map ids from here on are this run's keyframes (slam)
    model_id: str  # "<name>:<fingerprint>", published with every descriptor

    @property
    def map(self) -> PlaceMap:
        return self.localizer.map

    def process(self, frames: Sequence[ReceivedFrame]) -> Processed:
        """Frames that waited in the queue, in arrival order: keyframe spacing
        first (no decoding of frames it drops), then one encoder pass for all,
        so a worker that fell behind catches up at batch throughput."""
        kept, errors = [], []
        for f in frames:
            if not self.spacing.accept(f.stamp_ns, f.pose):
                continue
            try:
                kept.append((f, check_frame(f.decode(), "decoded image")))
            except Exception as exc:  # noqa: BLE001  (a bad frame is skipped, not fatal)
                errors.append(f"frame at {stamp_name(f.stamp_ns)} skipped: {exc}")
        results = []
        for source, run in itertools.groupby(kept, key=lambda k: k[0].source):
            run = list(run)
            results += self.localizer.feed(
                [rgb for _, rgb in run], [f.stamp_ns for f, _ in run],
                [f.pose for f, _ in run], [stamp_name(f.stamp_ns) for f, _ in run],
                source=source)
        return Processed(results, len(kept), errors)


@dataclass(frozen=True)
class ReceivedFrame:
    """A frame as it waits in the node's queue: spacing needs only the stamp and
    pose, so decoding waits until the frame is kept."""

    stamp_ns: int
    pose: Pose | None
    source: str  # the image's frame_id
    decode: Callable[[], np.ndarray]  # -> uint8 RGB [H, W, 3]


@dataclass
class Processed:
    results: list[WindowResult]
    frames: int  # frames that went into the localizer
    errors: list[str]  # one line per frame that could not be decoded


def _window(s: NodeSettings, recorded: dict) -> WindowConfig:
    """Window parameters override the map's; 0 means 'as recorded in the map'."""
    if not (s.window_max or recorded.get("max_len")):
        raise ValueError("no window length: set window_max or use a map that records it")
    return WindowConfig.override(recorded, s.window_max, s.window_min, s.window_stride)


def open_session(s: NodeSettings) -> Session:
    """Load map and model, check they belong together, build the localizer."""
    place_map = PlaceMap.load(s.map_path) if s.map_path else None
    window = _window(s, place_map.window if place_map else {})
    # the map's own checkpoint (older maps: its recorded config); a model parameter
    # must be the same model (the localizer checks the fingerprint)
    spec = s.model or (place_map.model_spec() if place_map else None)
    if not spec:
        raise ValueError(f"map {s.map_path} does not record its model; set the model parameter")
    model: SequenceModel = build_model(spec, window=window.max_len, device=s.device, half=s.half,
                                         runtime=s.runtime)
    model.warm_up()
    if place_map is None:
        place_map = PlaceMap.for_model(model, window, spec,
                                       index_spec=index_spec(s.map_index, model.descriptor_dim, 0))
    config = LocalizerConfig(
        s.mode, window, top_k=s.top_k, exclude_recent_s=s.loop_exclusion,
        exclude_recent_keyframes=s.loop_exclusion_keyframes,
        gate=GateConfig(s.score_threshold, s.consistency, s.consistency_tolerance))
    localizer = StreamingLocalizer(model.eval(), place_map, config)
    spacing = SpacingFilter(KeyframeSpacing(s.keyframe_min_distance, s.keyframe_min_interval))
    LOG.info("%s on %s, window %d..%d, map of %d entries", model.name, model.device,
             window.min_len, window.max_len, len(place_map))
    return Session(localizer, spacing, len(place_map),
                   f"{model.name}:{model.fingerprint()[:16]}")
