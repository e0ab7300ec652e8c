"""nuScenes reader on a fixture tree in the v1.0 JSON layout (real JPEG frames)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DEMO_DATA

from seqvpr_core.data.pairs import read_dataset
from seqvpr_core.data.windows import make_windows, sequence_bounds, window_spans
from seqvpr_core.eval import GroundTruth, window_positives
from seqvpr_core.train.config import GroundTruthSpec, WindowSpec
from seqvpr_core.train.samples import build_pair_windows

FRAMES = sorted((DEMO_DATA / "winter").glob("*.png"))
CAM_ROTATION = [0.5, -0.5, 0.5, -0.5]  # camera z (optical axis) -> vehicle x, as CAM_FRONT
CAM_OFFSET = [1.5, 0.0, 1.5]  # metres ahead of the rear axle


def _yaw(deg: float) -> list[float]:
    return [math.cos(math.radians(deg) / 2), 0.0, 0.0, math.sin(math.radians(deg) / 2)]


class Fixture:
    """Builds the seven tables; scenes are lists of (x, y, yaw) key frames driven 10 m apart."""

    def __init__(self, root: Path, version: str = "v1.0-mini") -> None:
        self.root, self.version = root, version
        self.t = {name: [] for name in ("scene", "sample", "sample_data", "ego_pose",
                                        "calibrated_sensor", "sensor", "log")}
        self.t["sensor"] = [{"token": "s-cam", "channel": "CAM_FRONT", "modality": "camera"},
                            {"token": "s-lidar", "channel": "LIDAR_TOP", "modality": "lidar"}]
        self.t["calibrated_sensor"] = [
            {"token": "cs-cam", "sensor_token": "s-cam", "translation": CAM_OFFSET,
             "rotation": CAM_ROTATION, "camera_intrinsic": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
            {"token": "cs-lidar", "sensor_token": "s-lidar", "translation": [0, 0, 2],
             "rotation": [1, 0, 0, 0], "camera_intrinsic": []}]
        self.n_images = 0

    def log(self, token: str, location: str, date: str) -> None:
        self.t["log"].append({"token": token, "logfile": f"n-{date}-{token}", "vehicle": "n015",
                              "date_captured": date, "location": location})

    def scene(self, name: str, log: str, description: str, poses: list[tuple], t0: int,
              sweep: bool = True) -> None:
        samples = [f"{name}-k{i}" for i in range(len(poses))]
        self.t["scene"].append({"token": name, "name": name, "description": description,
                                "log_token": log, "nbr_samples": len(poses),
                                "first_sample_token": samples[0],
                                "last_sample_token": samples[-1]})
        for i, (x, y, yaw) in enumerate(poses):
            stamp = t0 + i * 500_000  # key frames at 2 Hz, in microseconds
            self.t["sample"].append({"token": samples[i], "timestamp": stamp, "scene_token": name,
                                     "prev": samples[i - 1] if i else "",
                                     "next": samples[i + 1] if i + 1 < len(poses) else ""})
            self._frame(f"{name}-k{i}", samples[i], stamp, (x, y, yaw), True)
            self._frame(f"{name}-l{i}", samples[i], stamp, (x, y, yaw), True, lidar=True)
            if sweep and i + 1 < len(poses):  # one camera sweep half-way to the next key frame
                nx, ny, _ = poses[i + 1]
                self._frame(f"{name}-s{i}", samples[i + 1], stamp + 250_000,
                            ((x + nx) / 2, (y + ny) / 2, yaw), False)

    def _frame(self, token: str, sample: str, stamp: int, pose: tuple, key: bool,
               lidar: bool = False) -> None:
        x, y, yaw = pose
        self.t["ego_pose"].append({"token": f"ep-{token}", "timestamp": stamp,
                                   "translation": [x, y, 0.0], "rotation": _yaw(yaw)})
        folder = "samples" if key else "sweeps"
        if lidar:
            filename = f"{folder}/LIDAR_TOP/{token}.pcd.bin"
        else:
            filename = f"{folder}/CAM_FRONT/n015__CAM_FRONT__{stamp}.jpg"
            path = self.root / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.imread(str(FRAMES[self.n_images % len(FRAMES)])))
            self.n_images += 1
        self.t["sample_data"].append({
            "token": token, "sample_token": sample, "ego_pose_token": f"ep-{token}",
            "calibrated_sensor_token": "cs-lidar" if lidar else "cs-cam", "timestamp": stamp,
            "fileformat": "pcd" if lidar else "jpg", "is_key_frame": key, "height": 32,
            "width": 64, "filename": filename, "prev": "", "next": ""})

    def write(self) -> Path:
        (self.root / self.version).mkdir(parents=True, exist_ok=True)
        for name, records in self.t.items():
            records = records[::-1] if name == "sample_data" else records  # not in time order
            (self.root / self.version / f"{name}.json").write_text(json.dumps(records))
        return self.root


def east(y: float, n: int = 4) -> list[tuple]:
    return [(10.0 * i, y, 0.0) for i in range(n)]


@pytest.fixture
def nuscenes(tmp_path) -> Path:
    """Holland Village: day scenes driving east (A) and west (B) on one street, a night
    scene driving east 1 m beside A. Boston: one day scene in each of two logs."""
    f = Fixture(tmp_path)
    f.log("log-hv", "singapore-hollandvillage", "2018-08-01")
    f.log("log-b1", "boston-seaport", "2018-07-24")
    f.log("log-b2", "boston-seaport", "2018-08-30")
    f.scene("scene-a", "log-hv", "Wait at intersection, peds", east(0.0), 1_000_000)
    f.scene("scene-b", "log-hv", "Parked cars, turn", [(30.0 - 10.0 * i, 0.0, 180.0)
                                                       for i in range(4)], 9_000_000)
    f.scene("scene-n", "log-hv", "Night, big street, bus stop", east(1.0), 20_000_000)
    f.scene("scene-b1", "log-b1", "Construction", east(500.0), 40_000_000)
    f.scene("scene-b2", "log-b2", "Rain, congestion", east(500.5), 90_000_000)
    return f.write()


def test_nuscenes_day_map_night_queries_per_location(nuscenes):
    splits = read_dataset("nuscenes", nuscenes, version="v1.0-mini")
    assert list(splits) == ["test"]
    (pair,) = splits["test"]  # Boston has no night scene: not a pair
    assert pair.db.name == "nuscenes singapore-hollandvillage map"
    assert len(pair.db) == 8 and len(pair.query) == 4  # key frames only
    assert sequence_bounds(len(pair.db), pair.db.sequence_ids).tolist() == [[0, 4], [4, 8]]
    assert (np.diff(pair.query.stamps_ns) == 500_000_000).all()  # time order, in ns
    # camera centre = vehicle pose + calibration offset along the heading
    np.testing.assert_allclose(pair.db.positions[:4], [[1.5 + 10 * i, 0.0] for i in range(4)],
                               atol=1e-9)
    np.testing.assert_allclose(pair.db.positions[4, 0], 30.0 - 1.5)
    np.testing.assert_allclose(pair.db.headings, [90.0] * 4 + [270.0] * 4)
    assert all(p.is_file() and p.parent.name == "CAM_FRONT" for p in pair.db.paths)


def test_nuscenes_positives_need_radius_and_heading(nuscenes):
    pair = read_dataset("nuscenes", nuscenes, version="v1.0-mini")["test"][0]
    db_w = window_spans(make_windows(len(pair.db), 2, sequence_ids=pair.db.sequence_ids))
    q_w = window_spans(make_windows(len(pair.query), 2, sequence_ids=pair.query.sequence_ids))
    assert len(db_w) == 6  # 3 per scene: no window joins scene A to scene B
    args = (q_w, db_w, len(pair.db))
    kw = dict(query_positions=pair.query.positions, db_positions=pair.db.positions,
              query_headings=pair.query.headings, db_headings=pair.db.headings)
    radius_only = window_positives(*args, GroundTruth(radius=10.0), **kw)
    both = window_positives(*args, GroundTruth(radius=10.0, max_heading_deg=30.0), **kw)
    assert any(set(r) & {3, 4, 5} for r in radius_only)  # scene B is close, facing away
    assert all(set(b) <= {0, 1, 2} and len(b) for b in both)
    # training windows and positives take the same sequences and heading limit
    pw = build_pair_windows(pair, WindowSpec(length=2),
                            GroundTruthSpec(pos_radius=10.0, eval_radius=25.0,
                                            max_heading_deg=30.0))
    assert all(set(p) <= {0, 1, 2} for p in pw.positives)
    assert (pair.db.sequence_ids[pw.db_windows] == pair.db.sequence_ids[pw.db_windows[:, :1]]
            ).all()


def test_nuscenes_sweeps_and_later_pass(nuscenes):
    pair = read_dataset("nuscenes", nuscenes, version="v1.0-mini", sweeps=True,
                        splits={"test": ["singapore-hollandvillage"]})["test"][0]
    assert len(pair.query) == 7 and "sweeps" in str(pair.query.paths[1])
    later = read_dataset("nuscenes", nuscenes, version="v1.0-mini", queries="later",
                         splits={"val": ["boston-seaport"]})["val"][0]
    assert later.db.name.endswith("map") and len(later.db) == len(later.query) == 4
    assert later.db.stamps_ns[0] < later.query.stamps_ns[0]  # earlier log is the map
    with pytest.raises(ValueError, match="no query scenes for queries='night'"):
        read_dataset("nuscenes", nuscenes, version="v1.0-mini",
                     splits={"test": ["boston-seaport"]})["test"]


def test_nuscenes_wrong_layout_names_the_missing_table_or_field(nuscenes):
    with pytest.raises(ValueError, match=r"no metadata folder v1.0-trainval/ .*v1.0-mini"):
        read_dataset("nuscenes", nuscenes)
    with pytest.raises(ValueError, match="unknown location"):
        read_dataset("nuscenes", nuscenes, version="v1.0-mini", splits={"test": ["paris"]})
    table = nuscenes / "v1.0-mini" / "ego_pose.json"
    poses = json.loads(table.read_text())
    del poses[3]["rotation"]
    table.write_text(json.dumps(poses))
    with pytest.raises(ValueError, match=r"ego_pose.json record .* lacks field\(s\) \[.rot"):
        read_dataset("nuscenes", nuscenes, version="v1.0-mini")
    table.unlink()
    with pytest.raises(ValueError, match="missing v1.0-mini/ego_pose.json"):
        read_dataset("nuscenes", nuscenes, version="v1.0-mini")


def test_nuscenes_scenes_with_missing_images_are_left_out(nuscenes):
    records = json.loads((nuscenes / "v1.0-mini" / "sample_data.json").read_text())
    for r in records:
        if r["token"].startswith("scene-n-k"):  # a partial download: the night scene's frames
            (nuscenes / r["filename"]).unlink()
    with pytest.raises(ValueError, match="no location has both map and query scenes"):
        read_dataset("nuscenes", nuscenes, version="v1.0-mini")["test"]
    pair = read_dataset("nuscenes", nuscenes, version="v1.0-mini", queries="later",
                        splits={"test": ["boston-seaport"]})["test"][0]
    assert len(pair.db) == 4


def test_training_config_with_the_nuscenes_reader_validates_with_the_heading_limit(nuscenes,
                                                                                   tmp_path):
    from seqvpr_core.train import Trainer, config_from_dict

    hv = ["singapore-hollandvillage"]
    cfg = config_from_dict({
        "model": {"encoder": {"name": "pixels", "image_size": [16, 32]},
                  "aggregator": {"name": "fc", "length": 2, "out_dim": 16}},
        "data": {"reader": "nuscenes", "root": str(nuscenes),
                 "options": {"version": "v1.0-mini", "splits": {"train": hv, "val": hv}}},
        "output": str(tmp_path / "run"), "frozen_encoder": True, "window": {"length": 2},
        "ground_truth": {"pos_radius": 10.0, "eval_radius": 25.0, "max_heading_deg": 30.0},
        "mining": {"pool": 5, "negatives": 1, "refresh": 8},
        "optim": {"epochs": 1, "batch_size": 2, "lr": 1e-3}, "threads": 1})
    summary = Trainer(cfg).fit()
    assert summary["epochs"] == 1 and 0.0 <= summary["best_val_recall@5"] <= 1.0
