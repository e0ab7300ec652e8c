"""Dataset readers on fixture trees in their real layouts (real Nordland PNG/JPEG frames)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from seqvpr_core.data.pairs import read_dataset
from seqvpr_core.data.windows import make_windows
from seqvpr_core.eval import GroundTruth, window_positives

DEMO = Path(__file__).resolve().parents[1] / "seqvpr_core" / "demo_data" / "nordland"


def _frames(season: str, n: int) -> list[Path]:
    return sorted((DEMO / season).glob("*.png"))[:n]


def test_nordland_splits_are_frame_aligned_ranges(tmp_path):
    for season in ("summer", "winter"):
        (tmp_path / season).mkdir()
        for p in _frames(season, 30):
            shutil.copy(p, tmp_path / season / p.name)
    splits = read_dataset("nordland", tmp_path, splits={"train": [0, 20], "val": [20, 30]})
    pair = splits["train"][0]
    assert len(pair.db) == len(pair.query) == 20
    assert splits["val"][0].db.paths[0].name == splits["val"][0].query.paths[0].name
    with pytest.raises(ValueError, match="no season folder 'fall'"):
        read_dataset("nordland", tmp_path, query="fall")


def test_folder_csv_needs_poses(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(_frames("summer", 1)[0], tmp_path / "a")
    with pytest.raises(ValueError, match="has no poses.csv"):
        read_dataset("folder_csv", tmp_path, pairs={"test": [["a", "a"]]})


def test_robotcar_processed_layout_orders_by_frame_and_reads_utm(tmp_path):
    for side, run in (("database", "2014-12-09-13-21-02"), ("queries", "2014-12-16-18-44-24")):
        folder = tmp_path / "test" / side / run
        folder.mkdir(parents=True)
        for i, p in enumerate(_frames("summer" if side == "database" else "winter", 8)):
            image = cv2.imread(str(p))
            name = f"@{620000 + 2.0 * i:.2f}@{5735000.0:.2f}@30U@{i:05d}@.jpg"
            cv2.imwrite(str(folder / name), image)  # real JPEG files
    pair = read_dataset("robotcar", tmp_path, splits=("test",))["test"][0]
    assert len(pair.db) == 8 and pair.has_positions
    np.testing.assert_allclose(np.diff(pair.db.positions[:, 0]), 2.0)
    np.testing.assert_allclose(pair.db.headings, 90.0)  # driving east
    bad = tmp_path / "bad" / "test" / "database" / "run"
    bad.mkdir(parents=True)
    shutil.copy(_frames("summer", 1)[0], bad / "frame.png")
    (tmp_path / "bad" / "test" / "queries").mkdir(parents=True)
    with pytest.raises(ValueError, match="@east@north"):
        read_dataset("robotcar", tmp_path / "bad", splits=("test",))


def test_windows_with_distance_spacing_skip_frames_of_a_stopped_vehicle():
    x = np.array([0, 0, 0, 1, 2, 2, 2, 3, 4, 5], dtype=float)  # stops twice
    pos = np.stack([x, np.zeros_like(x)], 1)
    w = make_windows(len(x), 3, 1, pos, spacing_m=1.0)
    assert w[0].tolist() == [0, 3, 4]
    assert (np.diff(pos[w][:, :, 0], axis=1) >= 1.0).all()
    assert make_windows(10, 4, 3).tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_soft_negatives_lie_between_the_train_and_test_radius():
    db = np.stack([np.arange(20.0) * 5, np.zeros(20)], 1)  # a frame every 5 m
    q = db[[8]] + [1.0, 0.0]
    spans = np.stack([np.arange(20), np.arange(20)], 1)
    pos = window_positives(np.array([[0, 0]]), spans, 20, GroundTruth(radius=10.0), q, db)[0]
    near = window_positives(np.array([[0, 0]]), spans, 20, GroundTruth(radius=25.0), q, db)[0]
    assert set(pos) == {7, 8, 9, 10}  # 6, 1, 4 and 9 m away
    soft = set(near) - set(pos)
    assert soft == {4, 5, 6, 11, 12, 13}  # 10-25 m: neither positive nor negative


def test_heading_limit_rejects_the_opposite_direction():
    db = np.array([[0.0, 0.0], [1.0, 0.0]])
    gt = GroundTruth(radius=5.0, max_heading_deg=30.0)
    spans = np.array([[0, 0], [1, 1]])
    pos = window_positives(np.array([[0, 0]]), spans, 2, gt, np.array([[0.5, 0.0]]), db,
                           query_headings=np.array([10.0]), db_headings=np.array([350.0, 190.0]))
    assert pos[0].tolist() == [0]




def test_every_training_config_loads_and_names_registered_models():
    from seqvpr_core.models.registry import AGGREGATORS, ENCODERS
    from seqvpr_core.train import load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "config" / "train").glob("*.yaml"))
    assert len(configs) >= 9
    for path in configs:
        cfg = load_config(path)
        assert cfg.model["encoder"]["name"] in ENCODERS, path
        assert cfg.model["aggregator"]["name"] in AGGREGATORS, path
