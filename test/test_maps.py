"""Map directories: round trip, atomic replace, and refusal of damaged maps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from seqvpr_core.maps import Keyframe, MapFormatError, PlaceMap


def make_map(n=50, dim=16, metric="ip", seed=0) -> tuple[PlaceMap, np.ndarray]:
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n, dim)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    m = PlaceMap(dim, metric, model={"name": "test", "fingerprint": "abc123"},
                 window={"min_len": 3, "max_len": 3, "stride": 1})
    kfs = [Keyframe(i * 10, i * 10 + 5, 3, i, i + 2, f"img{i:03d}.png",
                    float(i) if i % 2 else math.nan, 2.0 * i if i % 2 else math.nan,
                    math.nan, "run1") for i in range(n)]
    m.add(xb, kfs)
    return m, xb


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_round_trip_keeps_descriptors_keyframes_and_search(tmp_path, metric):
    m, xb = make_map(metric=metric)
    m.save(tmp_path / "map")
    loaded = PlaceMap.load(tmp_path / "map")
    assert len(loaded) == 50 and loaded.dim == 16 and loaded.metric == metric
    assert loaded.window == {"min_len": 3, "max_len": 3, "stride": 1}
    for i in (0, 7, 49):
        assert loaded.keyframes[i] == m.keyframes[i]
    matches = loaded.matches(xb[7], k=3)
    assert matches[0].keyframe_id == 7 and matches[0].keyframe.name == "img007.png"
    assert matches[0].keyframe.has_pose and matches[0].keyframe.x == 7.0
    assert not loaded.keyframes[8].has_pose
    assert [m.rank for m in matches] == [0, 1, 2]
    assert matches[0].score >= matches[1].score >= matches[2].score


def test_search_matches_brute_force_and_honours_max_id():
    m, xb = make_map(n=200)
    rng = np.random.default_rng(1)
    xq = rng.standard_normal((20, 16)).astype(np.float32)
    D, I = m.search(xq, 5)
    ref = np.argsort(-(xq @ xb.T), axis=1)[:, :5]
    np.testing.assert_array_equal(I, ref)
    D, I = m.search(xq, 5, max_id=30)
    assert (I < 30).all()
    np.testing.assert_array_equal(I, np.argsort(-(xq @ xb[:30].T), axis=1)[:, :5])


def test_save_replaces_an_existing_map_whole(tmp_path):
    make_map(n=10)[0].save(tmp_path / "map")
    make_map(n=20)[0].save(tmp_path / "map")
    assert len(PlaceMap.load(tmp_path / "map")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map"]  # no temporary leftovers


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "index.faiss").write_bytes(b"garbage"), "index.faiss is damaged"),
    (lambda d: (d / "keyframes.csv").unlink(), "keyframes.csv is missing"),
    (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda d: _edit_manifest(d, count=99), "inconsistent"),
    (lambda d: _edit_manifest(d, version=99), "format version 99"),
])
def test_damaged_maps_are_refused_with_a_clear_message(tmp_path, damage, message):
    make_map()[0].save(tmp_path / "map")
    damage(tmp_path / "map")
    with pytest.raises(MapFormatError, match=message):
        PlaceMap.load(tmp_path / "map")


def _edit_manifest(directory, **changes):
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_model_mismatch_is_refused():
    m, _ = make_map()
    m.check_model("abc123", 16)
    with pytest.raises(MapFormatError, match="fingerprint"):
        m.check_model("zzz999", 16)
    with pytest.raises(MapFormatError, match="16-d descriptors but the model makes 32-d"):
        m.check_model("abc123", 32)


def test_missing_directory_and_descriptor_count_mismatch():
    with pytest.raises(MapFormatError, match="does not exist"):
        PlaceMap.load("/nonexistent/map")
    m, xb = make_map(n=3)
    with pytest.raises(ValueError, match="2 descriptors but 1 keyframes"):
        m.add(xb[:2], [m.keyframes[0]])
