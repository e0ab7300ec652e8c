"""nuScenes (Caesar et al., CVPR 2020) front-camera streams from the v1.0 JSON tables.

Layout (the official release; ``v1.0-mini`` or ``v1.0-trainval`` metadata)::

    <root>/v1.0-trainval/{scene,sample,sample_data,ego_pose,calibrated_sensor,sensor,log}.json
    <root>/samples/CAM_FRONT/*.jpg     key frames (2 Hz)
    <root>/sweeps/CAM_FRONT/*.jpg      the frames in between (12 Hz), with ``sweeps: true``

Tables used (nutonomy/nuscenes-devkit ``schema.md``): ``sensor.channel`` picks the
camera; ``calibrated_sensor`` (``sensor_token``, ``translation``, ``rotation``) places
it on the vehicle; every ``sample_data`` of that calibration (``filename``,
``timestamp`` in us, ``is_key_frame``, ``ego_pose_token``, ``sample_token``) is a
frame; ``sample.scene_token`` gives its scene; ``ego_pose`` (``translation`` x, y, z
and ``rotation`` quaternion w, x, y, z) its vehicle pose in the location's map
frame; ``scene.description`` tags night scenes ("Night, ..."); ``log.location``
(``boston-seaport``, ``singapore-onenorth``, ...) and ``log.date_captured`` group
scenes by place and time.

Frames: the camera's position (vehicle pose composed with the calibration) and
the compass heading of its optical axis (degrees, 0 = +y, 90 = +x, as the other
readers), in time order; each scene is one sequence of a traversal, so windows
never span two scenes. A ground truth for nuScenes should set ``max_heading_deg:
30``: streets are driven both ways, and the opposite lane seen from within the
radius shows another view.

Protocol (ours, documented because nuScenes has no seq-VPR standard split): every
location is a place set of its own (map frames are per location), so each split
lists locations and holds one (map, query) pair per location:

- ``queries: night`` (default): the map is the location's day scenes, the queries
  its night scenes, the day-to-night setting sequence methods are meant for;
- ``queries: later``: the map is the scenes of the earlier half of the
  location's logs (by ``date_captured``), the queries those of the later logs,
  another pass over the same streets.

``splits: {split: [location, ...]}``; by default every location that has both a
map and a query side is one ``test`` pair.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...inputs import read_json
from ..pairs import LazySplits, TraversalPair, layout_error, register_dataset
from ..traversal import Traversal, concat_traversals

LOG = logging.getLogger(__name__)

TABLES = {  # fields this reader uses, per table
    "scene": ("token", "name", "description", "log_token"),
    "sample": ("token", "scene_token"),
    "sample_data": ("token", "sample_token", "ego_pose_token", "calibrated_sensor_token",
                    "filename", "timestamp", "is_key_frame"),
    "ego_pose": ("token", "translation", "rotation"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation"),
    "sensor": ("token", "channel"),
    "log": ("token", "location", "date_captured", "logfile"),
}
QUERY_MODES = ("night", "later")
EXPECTED = ("<root>/<version>/{" + ",".join(TABLES) + "}.json and the image files they name "
            "(nuScenes v1.0 layout)")


def load_tables(root: Path, version: str) -> dict[str, list[dict[str, Any]]]:
    """The seven JSON tables, each record checked for the fields used here."""
    folder = root / version
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise layout_error(root, f"no metadata folder {version}/ (found {present})", EXPECTED)
    tables = {}
    for name, fields in TABLES.items():
        path = folder / f"{name}.json"
        if not os.path.lexists(path):
            raise layout_error(root, f"missing {version}/{name}.json", EXPECTED)
        records = read_json(path, "nuScenes table")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise layout_error(root, f"{version}/{name}.json is not a list of records", EXPECTED)
        for record in records:
            missing = [k for k in fields if k not in record]
            if missing:
                raise layout_error(root, f"{version}/{name}.json record "
                                   f"{record.get('token', '?')!r} lacks field(s) {missing}",
                                   EXPECTED)
        tables[name] = records
    return tables


def quaternion_matrix(q: list[float]) -> np.ndarray:
    """3x3 rotation of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def read_scenes(root: Path, tables: dict[str, list[dict[str, Any]]], camera: str = "CAM_FRONT",
                sweeps: bool = False) -> dict[str, dict[str, Any]]:
    """``{scene token: {"traversal", "location", "night", "date", "logfile"}}``, scenes
    with at least one frame of ``camera``; scenes whose image files are missing
    (a partial download) are left out with a warning."""
    channels = {s["token"]: s["channel"] for s in tables["sensor"]}
    if camera not in channels.values():
        raise layout_error(root, f"sensor.json has no channel {camera!r} (channels: "
                           f"{sorted(set(channels.values()))})", EXPECTED)
    calib = {c["token"]: c for c in tables["calibrated_sensor"]
             if channels.get(c["sensor_token"]) == camera}
    scene_of = {s["token"]: s["scene_token"] for s in tables["sample"]}
    poses = {p["token"]: p for p in tables["ego_pose"]}
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sd in tables["sample_data"]:
        if sd["calibrated_sensor_token"] in calib and (sd["is_key_frame"] or sweeps):
            if sd["sample_token"] not in scene_of:
                raise layout_error(root, f"sample_data {sd['token']!r} points to a sample not "
                                   "in sample.json", EXPECTED)
            frames[scene_of[sd["sample_token"]]].append(sd)
    logs = {lg["token"]: lg for lg in tables["log"]}
    out: dict[str, dict[str, Any]] = {}
    missing: list[Path] = []
    for scene in tables["scene"]:
        rows = sorted(frames.get(scene["token"], []), key=lambda r: r["timestamp"])
        if not rows:
            continue
        paths = [root / r["filename"] for r in rows]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            missing += absent
            continue
        positions, headings = _camera_poses(root, rows, poses, calib)
        log = logs.get(scene["log_token"])
        if log is None:
            raise layout_error(root, f"scene {scene['name']!r} points to a log not in log.json",
                               EXPECTED)
        stamps = np.array([r["timestamp"] for r in rows], dtype=np.int64) * 1000  # us -> ns
        out[scene["token"]] = {
            "traversal": Traversal(scene["name"], paths, stamps, positions, headings),
            "location": log["location"], "date": log["date_captured"],
            "logfile": log["logfile"], "night": "night" in scene["description"].lower(),
        }
    if missing:
        LOG.warning("nuscenes: %d %s frame file(s) missing (e.g. %s); their scenes are left out",
                    len(missing), camera, missing[0])
    if not out:
        example = f" (e.g. {missing[0]} is missing)" if missing else ""
        raise layout_error(root, f"no scene has {camera} frames on disk{example}", EXPECTED)
    return out


def _camera_poses(root: Path, rows: list[dict[str, Any]], poses: dict[str, dict[str, Any]],
                  calib: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (x, y) in the map frame and compass heading of its optical axis."""
    positions, headings = np.zeros((len(rows), 2)), np.zeros(len(rows))
    for i, r in enumerate(rows):
        pose = poses.get(r["ego_pose_token"])
        if pose is None:
            raise layout_error(root, f"sample_data {r['token']!r} points to an ego pose not in "
                               "ego_pose.json", EXPECTED)
        cs = calib[r["calibrated_sensor_token"]]
        r_ego = quaternion_matrix(pose["rotation"])
        centre = np.asarray(pose["translation"], float) + r_ego @ np.asarray(cs["translation"],
                                                                               float)
        axis = r_ego @ quaternion_matrix(cs["rotation"]) @ np.array([0.0, 0.0, 1.0])
        positions[i] = centre[:2]
        headings[i] = np.degrees(np.arctan2(axis[0], axis[1])) % 360.0
    return positions, headings


def location_pair(location: str, scenes: list[dict[str, Any]], queries: str
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(map scenes, query scenes) of one location under the ``queries`` protocol."""
    if queries == "night":
        return [s for s in scenes if not s["night"]], [s for s in scenes if s["night"]]
    logs = sorted({(s["date"], s["logfile"]) for s in scenes})
    early = set(logs[:(len(logs) + 1) // 2])
    return ([s for s in scenes if (s["date"], s["logfile"]) in early],
            [s for s in scenes if (s["date"], s["logfile"]) not in early])


@register_dataset("nuscenes")
def read_nuscenes(root: Path, version: str = "v1.0-trainval", camera: str = "CAM_FRONT",
                  sweeps: bool = False, queries: str = "night",
                  splits: dict[str, list[str]] | None = None) -> LazySplits:
    """``{split: [one (map, query) pair per location]}`` (protocol in the module docstring).

    Args:
        version: metadata folder, ``v1.0-trainval`` or ``v1.0-mini``.
        camera: sensor channel of the frames.
        sweeps: also the non-key frames (12 Hz instead of 2 Hz).
        queries: ``night`` (day map, night queries) or ``later`` (earlier logs map,
            later logs query).
        splits: ``{split: [location, ...]}``; default every usable location as ``test``.
    """
    if queries not in QUERY_MODES:
        raise ValueError(f"nuscenes queries must be one of {QUERY_MODES}, got {queries!r}")
    tables = load_tables(root, version)
    locations = sorted({lg["location"] for lg in tables["log"]})
    for split, names in (splits or {}).items():
        unknown = [n for n in names if n not in locations]
        if unknown or not names:
            raise ValueError(f"nuscenes split {split!r} lists unknown location(s) {unknown}; "
                             f"{version}/log.json has {locations}")
    state: dict[str, Any] = {}

    def by_location() -> dict[str, list[dict[str, Any]]]:
        if "scenes" not in state:  # the tables are parsed into frames once, on first use
            groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for s in read_scenes(root, tables, camera, sweeps).values():
                groups[s["location"]].append(s)
            state["scenes"] = groups
        return state["scenes"]

    def pair(split: str, location: str) -> TraversalPair:
        db, query = location_pair(location, by_location().get(location, []), queries)
        for side, chosen in (("map", db), ("query", query)):
            if not chosen:
                raise ValueError(f"nuscenes {location}: no {side} scenes for queries={queries!r} "
                                 f"in {version} (with {camera} frames on disk)")
        name = f"nuscenes {location}"
        return TraversalPair(f"{name} {split}",
                             concat_traversals(f"{name} map", [s["traversal"] for s in db]),
                             concat_traversals(f"{name} {queries}",
                                               [s["traversal"] for s in query]))

    def usable() -> list[str]:
        return [loc for loc in locations
                if all(location_pair(loc, by_location().get(loc, []), queries))]

    if splits is None:
        return LazySplits({"test": lambda: [pair("test", loc) for loc in usable()]
                           or _no_pairs(root, queries)})
    return LazySplits({split: (lambda s=split, n=list(names): [pair(s, loc) for loc in n])
                       for split, names in splits.items()})


def _no_pairs(root: Path, queries: str) -> list[TraversalPair]:
    raise layout_error(root, f"no location has both map and query scenes for "
                       f"queries={queries!r}", "day and night scenes of one location, or "
                       "several logs of one location")
