"""Real rosbag2 files (sqlite3 and MCAP) written with ``rosbags`` from Nordland frames."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bagtools import (  # noqa: E402
    NORDLAND,
    PERIOD_NS,
    T0_NS,
    nordland_frames,
    write_bag,
)

from seqvpr_core.cli.main import main  # noqa: E402
from seqvpr_core.data import (  # noqa: E402
    BagError,
    FrameSource,
    ImageEncodingError,
    KeyframeSpacing,
    raw_to_rgb,
    read_bag,
    read_image_folder,
)
from seqvpr_core.eval import GroundTruth, recall_at_k, window_positives  # noqa: E402
from seqvpr_core.eval.evaluate import frame_spans, ranked_ids  # noqa: E402
from seqvpr_core.maps import PlaceMap  # noqa: E402
from seqvpr_core.models import build_model  # noqa: E402
from seqvpr_core.stream import LocalizerConfig, StreamingLocalizer, WindowConfig, replay  # noqa: E402

pytestmark = pytest.mark.skipif(not NORDLAND.is_dir(), reason=f"{NORDLAND} is not present")

N = 120  # frames per season: enough windows for a recall, fast on two cores
TOPIC = "/camera/image"
WINDOW = WindowConfig.fixed(5)


@pytest.fixture(scope="module")
def seasons() -> dict[str, list[np.ndarray]]:
    return {s: nordland_frames(s, N) for s in ("summer", "winter")}


@pytest.fixture(scope="module")
def model():
    return build_model("pixels+cat", window=WINDOW.max_len)


def _recall(model, db: FrameSource, query: FrameSource) -> dict[int, float]:
    """Map ``db`` and localize ``query`` through the streaming localizer: Recall@{1,5}."""
    place_map = PlaceMap(model.descriptor_dim, model={"fingerprint": model.fingerprint()})
    for _ in replay(StreamingLocalizer(model, place_map, LocalizerConfig("mapping", WINDOW)),
                    db, progress=False):
        pass
    loc = StreamingLocalizer(model, place_map, LocalizerConfig("localize", WINDOW, top_k=5))
    results = list(replay(loc, query, progress=False))
    table = place_map.keyframes
    db_spans = np.stack([table.column("first_index"), table.column("last_index")], 1)
    positives = window_positives(frame_spans(results), db_spans, len(db), GroundTruth(1))
    return recall_at_k(ranked_ids(results, 5), positives, (1, 5))


def _folder(tmp: Path, season: str) -> Path:
    """The same first N frames as an image folder."""
    folder = tmp / "images" / season
    folder.mkdir(parents=True)
    for p in sorted((NORDLAND / season).glob("*.png"))[:N]:
        (folder / p.name).symlink_to(p)
    return folder


@pytest.mark.parametrize("storage,compressed", [("sqlite3", None), ("mcap", "png")])
def test_bag_recall_equals_image_folder(tmp_path, seasons, model, storage, compressed):
    """Summer bag -> map, winter bag -> localize: the same recall as the image folders."""
    bags = {s: read_bag(write_bag(tmp_path / f"{s}_bag", seasons[s], storage, compressed),
                        TOPIC, "/odom") for s in seasons}
    folders = {s: read_image_folder(_folder(tmp_path, s)) for s in seasons}
    assert all(isinstance(x, FrameSource) for x in (*bags.values(), *folders.values()))
    from_bags = _recall(model, bags["summer"], bags["winter"])
    from_folders = _recall(model, folders["summer"], folders["winter"])
    assert from_bags == from_folders
    assert from_bags[5] > 0.2  # the route is recognised at all, not an empty comparison


def test_frames_stamps_and_poses(tmp_path, seasons):
    """Lossless round trip; header stamps; odometry interpolated to the frame stamps."""
    frames = seasons["summer"][:30]
    bag = read_bag(write_bag(tmp_path / "b", frames, "mcap"), TOPIC, "/odom")
    decoded = [f for _, batch in bag.batches(7) for f in batch]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))
    assert bag.stamps_ns.tolist() == [T0_NS + i * PERIOD_NS for i in range(30)]
    assert bag.pose(10) == pytest.approx((10.0, 0.0, 0.0))  # 10 m/s, 10 Hz camera
    assert bag.names[1] == "1700000000.100000000"


@pytest.mark.parametrize("encoding,pad", [("bgr8", 3), ("rgba8", 0), ("bgra8", 5),
                                          ("mono8", 1), ("mono16", 2), ("rgb16", 1)])
def test_raw_encodings_with_row_padding(tmp_path, seasons, encoding, pad):
    frames = seasons["winter"][:4]
    bag = read_bag(write_bag(tmp_path / "b", frames, "sqlite3", encoding=encoding, pad=pad,
                             odom=False), TOPIC)
    got = next(bag.batches(4))[1]
    for rgb, out in zip(frames, got, strict=True):
        assert out.shape == rgb.shape and out.dtype == np.uint8
        if encoding.startswith("mono"):
            assert np.array_equal(out[..., 0], out[..., 2])  # grey replicated
        else:
            assert np.array_equal(out, rgb)


def test_jpeg_compressed_is_close(tmp_path, seasons):
    frames = seasons["summer"][:5]
    bag = read_bag(write_bag(tmp_path / "b", frames, "sqlite3", compressed="jpeg", odom=False),
                   TOPIC)
    got = next(bag.batches(5))[1]
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(got, frames, strict=True)]) < 4


def test_out_of_order_stamps_come_out_sorted(tmp_path, seasons):
    frames = seasons["summer"][:6]
    stamps = [T0_NS + i * PERIOD_NS for i in (0, 2, 1, 3, 5, 4)]
    bag = read_bag(write_bag(tmp_path / "b", frames, "sqlite3", odom=False, stamps_ns=stamps),
                   TOPIC)
    got = [f for _, b in bag.batches(4) for f in b]
    assert np.all(np.diff(bag.stamps_ns) > 0)
    expected = [frames[i] for i in (0, 2, 1, 3, 5, 4)]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_keyframe_spacing(tmp_path, seasons):
    path = write_bag(tmp_path / "b", seasons["summer"][:40], "sqlite3")
    assert len(read_bag(path, TOPIC, "/odom", KeyframeSpacing(min_distance_m=3.0))) == 14
    assert len(read_bag(path, TOPIC, spacing=KeyframeSpacing(min_interval_s=0.5))) == 8
    with pytest.raises(BagError, match="needs an odometry"):
        read_bag(path, TOPIC, spacing=KeyframeSpacing(min_distance_m=1.0))


def test_bad_encoding_missing_topic_wrong_type(tmp_path, seasons):
    path = write_bag(tmp_path / "b", seasons["summer"][:3], "mcap", encoding="bayer_rggb8")
    read_bag(path, TOPIC)  # a camera's raw Bayer pattern is read
    path = write_bag(tmp_path / "c", seasons["summer"][:3], "mcap", encoding="32FC1")
    with pytest.raises(BagError, match=r"/camera/image.*'32FC1' is a depth, float or generic"):
        read_bag(path, TOPIC)
    with pytest.raises(BagError, match=r"topic /nope is not in the bag; topics: /camera/image"):
        read_bag(path, "/nope")
    with pytest.raises(BagError, match=r"topic /odom carries nav_msgs/msg/Odometry"):
        read_bag(path, "/odom")
    with pytest.raises(ImageEncodingError, match="data has 18 bytes, height x step is 20"):
        raw_to_rgb(b"\0" * 18, 2, 3, "rgb8", 10)


def test_truncated_mcap_keeps_frames_before_damage(tmp_path, seasons):
    """A recording cut short (no footer, no metadata.yaml) still yields its complete chunks."""
    frames = seasons["summer"] * 2  # > 1 MiB of raw images: two MCAP chunks
    path = write_bag(tmp_path / "b", frames, "mcap")
    mcap = next(path.glob("*.mcap"))
    with mcap.open("r+b") as f:
        f.truncate(int(mcap.stat().st_size * 0.8))
    (path / "metadata.yaml").unlink()
    bag = read_bag(path, TOPIC, "/odom")
    assert 0 < len(bag) < len(frames)
    assert bag.damage and "/camera/image" in bag.damage[0] and "truncated" in bag.damage[0]
    got = [f for _, b in bag.batches(64) for f in b]
    assert len(got) == len(bag) and np.array_equal(got[-1], frames[len(bag) - 1])


def test_unreadable_bags_name_the_bag(tmp_path, seasons):
    path = write_bag(tmp_path / "b", seasons["summer"][:20], "sqlite3")
    db3 = next(path.glob("*.db3"))
    with db3.open("r+b") as f:
        f.truncate(db3.stat().st_size // 2)
    with pytest.raises(BagError, match=f"cannot open rosbag {re.escape(str(path))}"):
        read_bag(path, TOPIC)
    with pytest.raises(FileNotFoundError):
        read_bag(tmp_path / "missing", TOPIC)


def test_cli_build_map_and_localize_from_bags(tmp_path, seasons, capsys):
    summer = write_bag(tmp_path / "summer", seasons["summer"][:60], "sqlite3")
    winter = write_bag(tmp_path / "winter", seasons["winter"][:60], "mcap", compressed="png")
    assert main(["build-map", "--bag", str(summer), "--topic", TOPIC, "--odom-topic", "/odom",
                 "--model", "pixels+cat", "--window", "5", "--out", str(tmp_path / "map")]) == 0
    kf = PlaceMap.load(tmp_path / "map").keyframes[0]
    assert (kf.start_ns, kf.end_ns, kf.x) == (T0_NS, T0_NS + 4 * PERIOD_NS, 4.0)
    out = tmp_path / "out" / "matches.jsonl"
    assert main(["localize", "--map", str(tmp_path / "map"), "--bag", str(winter), "--topic",
                 TOPIC, "--odom-topic", "/odom", "--out", str(out), "--consistency", "1",
                 "--threshold", "-1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 56 and rows[0]["pose"] == [4.0, 0.0, 0.0]
    assert len(rows[0]["matches"]) == 5 and rows[0]["matches"][0]["stamp_ns"] >= T0_NS
    loops = out.with_suffix(".loops.jsonl").read_text().splitlines()
    assert len(loops) == 56  # consistency 1, threshold 0: every window is a candidate
    assert out.with_suffix(".png").stat().st_size > 0
    # the image-folder form keeps working, CSV output
    folder = _folder(tmp_path, "winter")
    assert main(["localize", "--map", str(tmp_path / "map"), "--images", str(folder),
                 "--out", str(tmp_path / "m.csv")]) == 0
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 1 + N - 4
    assert main(["localize", "--map", str(tmp_path / "map"), "--bag", str(winter),
                 "--topic", "/nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "topic /nope is not in the bag" in capsys.readouterr().err


@pytest.mark.parametrize(("index", "spec"), [(None, "Flat"), ("hnsw", "HNSW32")])
def test_cli_slam_from_scratch_finds_the_revisit(tmp_path, seasons, index, spec, capsys):
    """A bag that drives the same 30 frames twice: slam closes the loop on the second
    pass, in an exact map or one that grows as an HNSW graph."""
    frames = seasons["summer"][:30] * 2
    bag = write_bag(tmp_path / "loop", frames, "sqlite3", odom=False)
    out = tmp_path / "slam.csv"
    assert main(["localize", "--mode", "slam", "--model", "pixels+cat", "--window", "5",
                 "--bag", str(bag), "--topic", TOPIC, "--out", str(out), "--exclude-recent",
                 "1", "--threshold", "0.99", "--save-map", str(tmp_path / "grown"),
                 # the route starts with 17 identical dark frames: 13 windows can agree
                 "--consistency", "5",
                 *(["--index", index] if index else [])]) == 0
    loops = out.with_suffix(".loops.csv").read_text().splitlines()[1:]
    assert loops and all(int(line.split(",")[0]) >= 30 for line in loops)
    grown = PlaceMap.load(tmp_path / "grown")
    assert len(grown) == 56 and grown.index_spec == spec
    capsys.readouterr()
    assert main(["localize", "--mode", "slam", "--map", str(tmp_path / "grown"), "--index",
                 "hnsw", "--bag", str(bag), "--topic", TOPIC, "--out", str(out)]) == 2
    assert "--index sets the index of a new slam map" in capsys.readouterr().err
