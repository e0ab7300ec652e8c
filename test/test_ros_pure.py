"""The ROS node's logic without rclpy: parameters, frame queue, outputs, LIO-SAM, session."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # seqvpr_ros is installed by colcon, not by pip

from seqvpr_core.data import ImageEncodingError  # noqa: E402
from seqvpr_core.maps import PlaceMap  # noqa: E402
from seqvpr_ros.frame_queue import FrameQueue  # noqa: E402
from seqvpr_ros.outputs import (  # noqa: E402
    Diagnostics,
    RejectionLog,
    lio_sam_payload,
    loop_fields,
    window_fields,
    yaw_quaternion,
)
from seqvpr_ros.params import (  # noqa: E402
    DEFAULTS,
    PARAMS,
    NodeSettings,
    check_value,
    subscription_topic,
    validate,
)
from seqvpr_ros.session import ReceivedFrame, open_session  # noqa: E402

NORDLAND = ROOT / "seqvpr_core" / "demo_data" / "nordland" / "summer"  # in every checkout


def test_every_parameter_has_a_description_and_the_yaml_matches():
    assert all(len(p.description) > 15 for p in PARAMS)
    config = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())
    params = config["/**"]["ros__parameters"]
    assert params == DEFAULTS  # same names, values and YAML types as the node declares


def test_validation_names_each_problem():
    assert check_value("top_k", 0) == "top_k must be an integer in 1..1000, got 0"
    assert "must be float" in check_value("sync_slop", "fast")
    assert check_value("keyframe_min_interval", 2) is None  # an int for a float is fine
    assert "must be int" in check_value("queue_size", True)
    assert "one of" in check_value("device", "tpu")
    assert check_value("nope", 1) == "unknown parameter 'nope'"
    errors = validate({**DEFAULTS})
    assert errors == ["localize mode needs map_path (a map from `seqvpr build-map`)"]
    errors = validate({**DEFAULTS, "mode": "slam", "publish_lio_sam": False,
                       "keyframe_min_distance": 2.0})
    assert any("slam mode without map_path" in e for e in errors)
    assert "map_index must be one of" in check_value("map_index", "ivf-pq")  # needs training
    assert any("map_index sets the index of a new slam map" in e for e in
               validate({**DEFAULTS, "mode": "slam", "map_path": "m", "map_index": "hnsw"}))
    assert any("needs odom_topic" in e for e in errors)
    errors = validate({**DEFAULTS, "map_path": "m", "publish_lio_sam": True, "device": "cpu",
                       "half": True, "window_min": 9, "window_max": 5})
    assert len(errors) == 3 and any("LIO-SAM" in e for e in errors)
    assert "one of" in check_value("runtime", "tensorrt")
    errors = validate({**DEFAULTS, "map_path": "m", "runtime": "onnxruntime"})
    assert errors == ["runtime onnxruntime runs on the CPU: set device cpu"]
    assert validate({**DEFAULTS, "map_path": "m", "runtime": "onnxruntime", "device": "cpu"}) == []
    with pytest.raises(ValueError, match="invalid parameters: localize mode needs map_path"):
        NodeSettings.from_values({})
    assert NodeSettings.from_values({"map_path": "m"}).queue_size == 8


def test_compressed_topic_follows_image_transport():
    assert subscription_topic("camera/image", True) == "camera/image/compressed"
    assert subscription_topic("camera/image/compressed", True) == "camera/image/compressed"
    assert subscription_topic("camera/image", False) == "camera/image"


def test_queue_drops_oldest_and_counts():
    q = FrameQueue(3)
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert (q.received, q.dropped, len(q)) == (5, 2, 3)
    assert q.get_batch(2, 0) == [2, 3]  # oldest first, at most the limit
    assert q.get_batch(8, 0) == [4]
    assert q.get_batch(8, 0.01) == [] and len(q) == 0


def test_queue_under_overload_stays_bounded_and_close_wakes_the_worker():
    q: FrameQueue[int] = FrameQueue(4)
    got: list[int] = []
    started = threading.Event()

    def worker():
        started.set()
        while items := q.get_batch(8, timeout=2.0):
            assert len(items) <= 4
            got.extend(items)
            threading.Event().wait(0.001)  # slower than the producer

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    for i in range(500):
        q.put(i)
        assert len(q) <= 4
    q.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert q.dropped > 0 and len(got) + q.dropped == 500
    assert got == sorted(got) and got[-1] == 499  # newest frame kept, order preserved


def test_diagnostics_values_and_level():
    d = Diagnostics(window_s=10.0)
    for i in range(20):
        d.frame(now=100.0 + i * 0.1)
    d.window(stamp_ns=1_000_000_000, now_ns=1_050_000_000, now=101.0)
    v = d.values(received=40, dropped=10, queued=2, map_size=7, now=102.0)
    assert v["frame rate (Hz)"] == "2.00" and v["latency max (ms)"] == "50.0"
    assert v["frames dropped"] == "10" and v["map size"] == "7"
    assert d.level(40, 10, now=102.0) == (1, "overloaded: 10 of 40 frames dropped")
    assert d.level(40, 2, now=102.0) == (0, "ok")
    d.reject("frame at 1.0 skipped: rgb8 image is empty (0x0 pixels)", now=103.0)
    assert d.level(40, 2, now=104.0) == (1, "1 frames rejected in the last 10 s: frame at 1.0 "
                                            "skipped: rgb8 image is empty (0x0 pixels)")
    v = d.values(received=41, dropped=2, queued=0, map_size=7, now=104.0)
    assert v["frames rejected"] == "1" and "empty" in v["last rejection"]
    assert d.level(40, 2, now=114.0) == (0, "ok")  # the window moved on; the count stays
    assert d.values(41, 2, 0, 7, now=114.0)["frames rejected"] == "1"


def test_rejection_log_says_each_kind_of_problem_once_per_period():
    log = RejectionLog(period_s=10.0)
    truncated = "frame at {} skipped: rgb8 image 64x32 step 192: data has {} bytes, height x " \
                "step is 6144 (truncated)"
    lines = [log.line(truncated.format(t, 6000 + t), now=float(t)) for t in range(5)]
    assert lines[0] == truncated.format(0, 6000) and lines[1:] == [None] * 4
    assert log.line("frame at 5 skipped: image encoding '32FC1' is a depth image", now=5.0)
    assert log.line(truncated.format(11, 6011), now=11.0) == \
        truncated.format(11, 6011) + " (4 more like it since the last report)"
    for i in range(RejectionLog.MAX_KINDS * 2):  # a publisher inventing encodings
        log.line(f"image encoding 'x{chr(65 + i % 26) * (i + 1)}' is not supported", now=20.0)
    assert len(log._kinds) <= RejectionLog.MAX_KINDS


def test_yaw_quaternion():
    assert yaw_quaternion(float("nan")) == (0.0, 0.0, 0.0, 1.0)
    x, y, z, w = yaw_quaternion(90.0)
    assert (x, y) == (0.0, 0.0) and z == pytest.approx(w) == pytest.approx(2**-0.5)


@pytest.fixture(scope="module")
def frames():
    import cv2

    paths = sorted(NORDLAND.glob("*.png"))[100:124]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


@pytest.mark.parametrize("map_index", ["flat", "hnsw"])
def test_slam_session_closes_the_loop_and_feeds_lio_sam(frames, tmp_path, map_index):
    """The node's worker path without ROS: queue -> spacing -> localizer -> outputs.

    The robot drives 12 places twice; on the second pass the gate opens and the
    closure maps to messages and to LIO-SAM's [t_cur, t_prev] in seconds.
    """
    settings = NodeSettings.from_values({
        "mode": "slam", "model": "pixels+cat", "window_max": 4, "device": "cpu",
        "loop_exclusion": 1.0, "score_threshold": 0.999, "consistency": 2,
        "publish_lio_sam": True, "queue_size": 64, "map_index": map_index})
    session = open_session(settings)
    q = FrameQueue(settings.queue_size)
    route = frames[:12] * 2
    for i, frame in enumerate(route):
        q.put(ReceivedFrame(1_000_000_000 + i * 200_000_000, (float(i % 12), 0.0, 0.0),
                            "camera", lambda frame=frame: frame))
    results = session.process(q.get_batch(len(route), 0)).results
    closures = [r for r in results if r.loop_closure is not None]
    assert closures and all(r.last.index >= 12 + 3 for r in closures)
    first = closures[0]
    w = window_fields(first)
    assert w.window_length == 4 and w.stamp_ns == first.last.stamp_ns
    assert [m.rank for m in w.matches] == list(range(len(w.matches)))
    lc = loop_fields(first)
    assert lc.query_id == first.keyframe_id and lc.query_pose.has_pose
    assert lc.match_pose.x == pytest.approx(first.last.pose[0])  # the same place, pass one
    t_cur, t_prev = lio_sam_payload(first, session.first_own_id)
    assert t_cur == pytest.approx(first.last.stamp_ns * 1e-9)
    assert t_cur - t_prev == pytest.approx(12 * 0.2)
    assert lio_sam_payload(first, first_own_id=10_000) is None  # prior-map matches stay out
    assert session.model_id.startswith("pixels+cat:")
    saved = session.map.save(tmp_path / "grown")
    assert saved.is_dir() and len(session.map) == len(results)
    assert PlaceMap.load(saved).index_spec == {"flat": "Flat", "hnsw": "HNSW32"}[map_index]


def test_queued_frames_are_encoded_in_one_pass_like_one_by_one(frames):
    """A worker that fell behind: the frames waiting are spaced, decoded and
    encoded in one batch, with the results of stepping them one at a time; a frame
    that cannot be decoded is skipped and reported, the rest go on."""
    settings = NodeSettings.from_values({
        "mode": "slam", "model": "pixels+cat", "window_max": 3, "device": "cpu",
        "keyframe_min_interval": 0.15})

    def bad():
        raise ImageEncodingError("unsupported encoding 'bayer_rggb8'")

    received = [ReceivedFrame(i * 100_000_000, None, "cam", lambda f=f: f)
                for i, f in enumerate(frames[:12])]
    received[6] = ReceivedFrame(received[6].stamp_ns, None, "cam", bad)
    batched = open_session(settings)
    calls = []
    encode = batched.localizer.model.encode_frames
    batched.localizer.model.encode_frames = lambda fs: calls.append(len(fs)) or encode(fs)
    done = batched.process(received)
    assert calls == [5]  # 12 frames 0.1 s apart, every other one kept, one undecodable
    assert done.frames == 5 and len(done.errors) == 1 and "bayer_rggb8" in done.errors[0]
    one_by_one = open_session(settings)
    single = [r for f in received for r in one_by_one.process([f]).results]
    assert [r.last.index for r in done.results] == [r.last.index for r in single] == [2, 3, 4]
    for a, b in zip(done.results, single, strict=True):
        np.testing.assert_allclose(a.descriptor, b.descriptor, atol=1e-6)
        assert a.last.source == "cam" and a.last.stamp_ns == b.last.stamp_ns


def test_a_session_pays_first_frame_costs_before_the_stream(frames):
    """On a CPU the default runtime exports the encoder to ONNX Runtime: when the
    node starts, not on the robot's first frame."""
    pytest.importorskip("onnxruntime", reason="onnxruntime, a seqvpr dependency, is missing")
    session = open_session(NodeSettings.from_values({
        "mode": "slam", "model": "efficientnet_lite0+seqgem", "window_max": 3,
        "device": "cpu"}))
    runtime = session.localizer.model.encoder.runtime
    assert runtime is not None and runtime.exports == 1
    session.process([ReceivedFrame(0, None, "cam", lambda: frames[0])])
    assert runtime.exports == 1


def test_messages_declare_every_field_the_node_sets():
    fields = {}
    for path in (ROOT / "msg").glob("*.msg"):
        names = re.findall(r"^(?!#)\S+\s+(\w+)", path.read_text(), flags=re.M)
        fields[path.stem] = set(names)
    assert fields["PlaceMatch"] == {"keyframe_id", "stamp", "pose", "has_pose", "score", "rank"}
    assert fields["PlaceMatchArray"] == {"header", "window_start", "window_length", "matches"}
    assert fields["LoopClosure"] >= {"query_stamp", "match_stamp", "query_id", "match_id",
                                     "query_pose", "match_pose", "score"}
    assert fields["SequenceDescriptor"] == {"header", "window_start", "window_length",
                                            "model_id", "descriptor"}
    node = (ROOT / "seqvpr_ros" / "node.py").read_text()
    for msg, names in fields.items():
        for name in names - {"header"}:
            assert re.search(rf"\b{name}\b", node), f"node.py never sets {msg}.{name}"
