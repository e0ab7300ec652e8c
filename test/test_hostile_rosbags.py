"""Real rosbag2 files (written with ``rosbags``) crafted to mislead: odometry with
infinite and NaN positions, repeated stamps, a decompression-bomb CompressedImage,
files that are not bags or block on open."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile import call, huge_png, no_hang, refused
from rosbags.rosbag2 import Writer

sys.path.insert(0, str(Path(__file__).parent))
from bagtools import (  # noqa: E402
    NORDLAND,
    PERIOD_NS,
    STORAGE,
    T0_NS,
    TS,
    _header,
    image_msg,
    nordland_frames,
    odometry_msg,
    write_bag,
)

from seqvpr_core.data import read_bag  # noqa: E402
from seqvpr_core.maps import PlaceMap  # noqa: E402

pytestmark = pytest.mark.skipif(not NORDLAND.is_dir(), reason=f"{NORDLAND} is not present")
TOPIC = "/camera/image"
IMAGE, ODOM = "sensor_msgs/msg/Image", "nav_msgs/msg/Odometry"


@pytest.fixture(scope="module")
def frames():
    return nordland_frames("summer", 10)


def bag_with_odometry(path: Path, frames, positions) -> Path:
    """One frame per 100 ms, odometry 25 ms before and after each: ``positions[k]`` is
    the x of odometry message k (inf / nan allowed)."""
    with Writer(path, version=9, storage_plugin=STORAGE["mcap"]) as w:
        img = w.add_connection(TOPIC, IMAGE, typestore=TS)
        od = w.add_connection("/odom", ODOM, typestore=TS)
        k = 0
        for i, rgb in enumerate(frames):
            stamp = T0_NS + i * PERIOD_NS
            w.write(img, stamp, TS.serialize_cdr(image_msg(rgb, stamp), IMAGE))
            for s in (stamp - PERIOD_NS // 4, stamp + PERIOD_NS // 4):
                w.write(od, s, TS.serialize_cdr(odometry_msg(s, positions[k]), ODOM))
                k += 1
    return path


def test_non_finite_odometry_never_becomes_a_pose(tmp_path, frames, capsys, caplog):
    xs = [float(k) for k in range(2 * len(frames))]
    xs[4], xs[5], xs[9] = math.inf, math.nan, -math.inf
    bag = bag_with_odometry(tmp_path / "bag", frames, xs)
    poses = read_bag(bag, TOPIC, "/odom").poses
    assert all(p is None or all(map(math.isfinite, p[:2])) for p in poses)
    assert "3 messages of /odom have a non-finite pose; left out" in caplog.text
    code, _, err = call(["build-map", "--bag", bag, "--topic", TOPIC, "--odom-topic", "/odom",
                         "--model", "pixels+avg", "--window", "3", "--out", tmp_path / "map"],
                        capsys)
    assert code == 0, err
    table = PlaceMap.load(tmp_path / "map").keyframes
    assert not np.isinf(table.column("x")).any()


def test_repeated_stamps_are_kept_and_reported(tmp_path, frames, capsys):
    stamps = [T0_NS + i * PERIOD_NS for i in (0, 1, 1, 2, 3, 3, 3, 4)]
    bag = write_bag(tmp_path / "bag", frames[:8], "sqlite3", odom=False, stamps_ns=stamps)
    code, out, err = call(["build-map", "--bag", bag, "--topic", TOPIC, "--model", "pixels+avg",
                           "--window", "3", "--out", tmp_path / "map"], capsys)
    assert code == 0, err
    assert "stream: 3 duplicate stamps" in out
    assert len(PlaceMap.load(tmp_path / "map")) == 6


def test_a_decompression_bomb_compressed_image_is_refused_naming_topic_and_stamp(tmp_path,
                                                                               capsys):
    png = huge_png(tmp_path / "bomb.png").read_bytes()
    msgtype = "sensor_msgs/msg/CompressedImage"
    with Writer(tmp_path / "bag", version=9, storage_plugin=STORAGE["mcap"]) as w:
        conn = w.add_connection(TOPIC, msgtype, typestore=TS)
        msg = TS.types[msgtype](_header(T0_NS), "png", np.frombuffer(png, np.uint8))
        w.write(conn, T0_NS, TS.serialize_cdr(msg, msgtype))
    refused(call(["build-map", "--bag", tmp_path / "bag", "--topic", TOPIC, "--model",
                  "pixels+avg", "--window", "3", "--out", tmp_path / "map"], capsys),
            f"topic {TOPIC}", "at stamp 1700000000.000000000",
            "is 20000x20000 pixels (400 MP), more than seqvpr decodes")


@pytest.mark.parametrize("make,message", [
    (lambda d: os.mkfifo(d / "rec.mcap") or d / "rec.mcap", "rosbag {p} is a named pipe"),
    (lambda d: (d / "rec.mcap").write_bytes(b"") or d / "rec.mcap", "cannot open rosbag {p}"),
    (lambda d: (d / "rec.db3").write_bytes(b"SQLite format 3\x00 no") and d / "rec.db3",
     "cannot open rosbag {p}"),
    (lambda d: ((d / "bag").mkdir(), (d / "bag" / "metadata.yaml").write_text("[:")) and
     d / "bag", "cannot open rosbag {p}"),
    (lambda d: (d / "bag").mkdir() or d / "bag", "{p} has no metadata.yaml and 0 storage files"),
])
def test_things_that_are_not_bags_are_refused_without_hanging(tmp_path, capsys, make, message):
    path = make(tmp_path)
    with no_hang():
        refused(call(["build-map", "--bag", path, "--topic", TOPIC, "--model", "pixels+avg",
                      "--window", "3", "--out", tmp_path / "map"], capsys),
                message.format(p=path))


def test_an_empty_raw_image_is_refused_naming_the_topic(tmp_path, capsys):
    with Writer(tmp_path / "bag", version=9, storage_plugin=STORAGE["sqlite3"]) as w:
        conn = w.add_connection(TOPIC, IMAGE, typestore=TS)
        msg = TS.types[IMAGE](_header(T0_NS), 0, 0, "rgb8", 0, 0, np.zeros(0, np.uint8))
        w.write(conn, T0_NS, TS.serialize_cdr(msg, IMAGE))
    refused(call(["build-map", "--bag", tmp_path / "bag", "--topic", TOPIC, "--model",
                  "pixels+avg", "--window", "3", "--out", tmp_path / "map"], capsys),
            f"topic {TOPIC}", "rgb8 image is empty (0x0 pixels)")
