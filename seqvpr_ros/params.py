"""The node's parameters: one table (name, default, description) and their validation.

No rclpy, so the node, the launch files and the tests read the same table, and
validation is tested without ROS; the choices come from seqvpr_core's own tables,
and every number is checked by the same :mod:`seqvpr_core.limits` as the matching
``seqvpr`` option (finite, in range), with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqvpr_core.catalog import GROWING_INDEX_KINDS, RUNTIMES
from seqvpr_core.limits import (
    BATCH,
    COUNT,
    MAX_WINDOW,
    METRES,
    NON_NEGATIVE_COUNT,
    PERIOD_S,
    SECONDS,
    THRESHOLD,
    TOP_K,
    Limit,
)
from seqvpr_core.stream.gate import GateConfig

MODES = ("localize", "slam")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # its type is the parameter's type
    description: str


PARAMS: tuple[Param, ...] = (
    Param("image_topic", "image", "Image topic (relative; remap it in launch)."),
    Param("compressed", False, "Subscribe to sensor_msgs/CompressedImage (jpeg/png) instead "
                               "of sensor_msgs/Image."),
    Param("odom_topic", "", "nav_msgs/Odometry topic synchronised with the images for poses "
                            "and distance keyframes; empty: no odometry."),
    Param("sync_slop", 0.05, "Approximate-time synchronisation tolerance, seconds."),
    Param("model", "", "Model: checkpoint (.pt), config (.yaml/.json) or "
                       "'encoder+aggregator'; empty: the model recorded in the map."),
    Param("map_path", "", "Map directory from `seqvpr build-map`. Required in localize mode; "
                          "optional prior map in slam mode."),
    Param("mode", "localize", "localize: match against a read-only map; slam: the map grows "
                              "from this robot's keyframes and revisits become loop closures."),
    Param("map_index", "flat", "slam without map_path: index of the map that grows, flat "
                               "(exact) or hnsw (sub-linear search for long runs)."),
    Param("device", "auto", "Where the model runs: auto (CUDA when available), cpu or cuda."),
    Param("half", False, "Run the model in float16 (CUDA only)."),
    Param("runtime", "auto", "Encoder inference: onnxruntime (float32 on the CPU, CNN and "
                             "CCT encoders; 1.1-2.4x faster per frame) or torch; auto: "
                             "onnxruntime wherever it can run, torch elsewhere."),
    Param("window_min", 0, "Shortest window while a stream starts; 0: from the map."),
    Param("window_max", 0, "Window length in frames; 0: from the map."),
    Param("window_stride", 0, "New frames between two windows; 0: from the map."),
    Param("keyframe_min_distance", 0.0, "Keep a frame only after moving this many metres "
                                        "(needs odom_topic); 0: off."),
    Param("keyframe_min_interval", 0.0, "Keep a frame only this many seconds after the previous "
                                        "kept one; 0: off."),
    Param("top_k", 5, "Map matches published per window."),
    Param("score_threshold", GateConfig.threshold, "Loop-closure gate: minimum score of the "
                                                   "best match (inner product for ip maps, "
                                                   "-squared L2 distance for l2 maps); -inf: "
                                                   "none."),
    Param("loop_exclusion", 30.0, "slam: ignore map entries from the last N seconds before a "
                                  "window (no loop closure with the robot's recent past)."),
    Param("loop_exclusion_keyframes", 0, "slam: also ignore the newest N map entries."),
    Param("consistency", GateConfig.consistency, "Loop-closure gate: consecutive windows "
                                                 "whose best matches move on along the map "
                                                 "with the query."),
    Param("consistency_tolerance", GateConfig.tolerance, "Loop-closure gate: map entries those "
                                                         "matches may drift from moving on one "
                                                         "entry per window (raise for revisits "
                                                         "at another speed without distance "
                                                         "keyframes)."),
    Param("queue_size", 8, "Frames waiting for the model; when full the oldest is dropped "
                           "and counted."),
    Param("max_batch", 8, "Most waiting frames encoded together; 1: one at a time."),
    Param("publish_descriptors", True, "Publish ~/descriptors (SequenceDescriptor)."),
    Param("publish_lio_sam", False, "slam: publish [t_cur, t_prev] on "
                                    "lio_loop/loop_closure_detection for LIO-SAM."),
    Param("publish_markers", False, "Publish ~/markers (visualization_msgs/MarkerArray) of "
                                    "loop closures for RViz."),
    Param("marker_frame", "map", "Frame of the RViz markers."),
    Param("map_save_path", "", "slam: directory the ~/save_map service writes; empty: "
                               "map_path."),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages."),
)
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values (attribute per parameter)."""

    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeSettings:
        """All parameters (missing ones take defaults); ValueError lists every problem."""
        merged = {**DEFAULTS, **values}
        errors = validate(merged)
        if errors:
            raise ValueError("invalid parameters: " + "; ".join(errors))
        return cls(merged)


MAX_QUEUE = 1000  # frames waiting for the model: 33 s of a 30 Hz camera
FROM_MAP = Limit(integer=True, low=0, high=MAX_WINDOW)  # 0: as recorded in the map
LIMITS: dict[str, Limit] = {
    "window_min": FROM_MAP, "window_max": FROM_MAP,
    "window_stride": Limit(integer=True, low=0), "loop_exclusion_keyframes": NON_NEGATIVE_COUNT,
    "consistency_tolerance": NON_NEGATIVE_COUNT, "top_k": TOP_K, "consistency": COUNT,
    "queue_size": Limit(integer=True, low=1, high=MAX_QUEUE), "max_batch": BATCH,
    "sync_slop": SECONDS, "keyframe_min_distance": METRES, "keyframe_min_interval": SECONDS,
    "loop_exclusion": SECONDS, "score_threshold": THRESHOLD, "diagnostics_period": PERIOD_S,
}
# light tables (no torch): ``ros2 launch`` reads this module
_CHOICES = {"mode": MODES, "device": DEVICES, "runtime": RUNTIMES,
            "map_index": GROWING_INDEX_KINDS}


def check_value(name: str, value: Any) -> str | None:
    """The problem with one parameter value on its own (type, choices, range), or None.

    This is what a running node accepts or refuses in ``ros2 param set``; checks
    across parameters wait for the next configure (see :func:`validate`).
    """
    if name not in DEFAULTS:
        return f"unknown parameter {name!r}"
    default = DEFAULTS[name]
    expected = float if isinstance(default, float) else type(default)
    ok = isinstance(value, expected) or (expected is float and type(value) is int)
    if not ok or (expected is int and isinstance(value, bool)):
        return f"{name} must be {expected.__name__}, got {value!r}"
    if name in _CHOICES and value not in _CHOICES[name]:
        return f"{name} must be one of {_CHOICES[name]}, got {value!r}"
    problem = LIMITS[name].problem(value) if name in LIMITS else None
    if problem:
        return f"{name} {problem}"
    if name == "image_topic" and not value:
        return "image_topic must not be empty"
    return None


def subscription_topic(image_topic: str, compressed: bool) -> str:
    """image_transport convention: compressed images live on ``<topic>/compressed``."""
    if compressed and not image_topic.endswith("/compressed"):
        return image_topic.rstrip("/") + "/compressed"
    return image_topic


def validate(v: dict[str, Any]) -> list[str]:
    """Every problem with a full set of parameter values, as readable sentences."""
    errors = [e for k, value in v.items() if (e := check_value(k, value))]
    if errors:
        return errors
    if v["mode"] == "localize" and not v["map_path"]:
        errors.append("localize mode needs map_path (a map from `seqvpr build-map`)")
    if v["mode"] == "slam" and not v["map_path"] and not (v["model"] and v["window_max"]):
        errors.append("slam mode without map_path needs model and window_max")
    if v["map_index"] != "flat" and v["map_path"]:
        errors.append("map_index sets the index of a new slam map; the map at map_path keeps "
                      "its own")
    if v["half"] and v["device"] == "cpu":
        errors.append("half precision needs device cuda or auto")
    if v["runtime"] == "onnxruntime" and v["device"] != "cpu":
        errors.append(f"runtime {v['runtime']} runs on the CPU: set device cpu")
    if v["window_min"] and v["window_max"] and v["window_min"] > v["window_max"]:
        errors.append(f"window_min {v['window_min']} > window_max {v['window_max']}")
    if v["keyframe_min_distance"] > 0 and not v["odom_topic"]:
        errors.append("keyframe_min_distance needs odom_topic (distance comes from odometry)")
    if v["publish_lio_sam"] and v["mode"] != "slam":
        errors.append("publish_lio_sam needs mode slam: LIO-SAM looks both stamps up among "
                      "its own keyframes, which a prior map's stamps are not")
    return errors
