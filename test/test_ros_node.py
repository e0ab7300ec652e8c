"""The rclpy node in-process (needs a ROS 2 workspace with seqvpr_ros built; skipped otherwise)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: source ROS 2 Humble/Jazzy "
                                            "and a workspace with seqvpr_ros built (colcon)")
pytest.importorskip("seqvpr_ros.msg", reason="seqvpr_ros messages are not built: colcon build")

import cv2  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from seqvpr_ros.msg import LoopClosure, PlaceMatchArray  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from seqvpr_ros.node import SeqvprLocalizer  # noqa: E402
from seqvpr_ros.params import PARAMS  # noqa: E402

pytestmark = pytest.mark.ros
NORDLAND = Path(__file__).resolve().parents[2] / "shared" / "data" / "nordland64" / "summer"


@pytest.fixture(scope="module", autouse=True)
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _frames(n: int):
    paths = sorted(NORDLAND.glob("*.png"))[1000:1000 + n]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def _image(rgb, stamp_ns: int) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                step=rgb.shape[1] * 3, data=rgb.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera"
    return msg


def _run(overrides: dict, frames, topics: dict) -> dict[str, list]:
    """Configure + activate the node, publish ``frames``, collect messages on ``topics``."""
    node = SeqvprLocalizer(parameter_overrides=[Parameter(k, value=v)
                                                for k, v in overrides.items()])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    probe = rclpy.create_node("seqvpr_probe")
    got: dict[str, list] = {name: [] for name in topics}
    for name, (msg_type, topic) in topics.items():
        probe.create_subscription(msg_type, topic, got[name].append, 10)
    pub = probe.create_publisher(Image, "image", 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    time.sleep(0.5)  # discovery
    for i, rgb in enumerate(frames):
        pub.publish(_image(rgb, 1_000_000_000 + i * 200_000_000))
        executor.spin_once(timeout_sec=0.05)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(got.values()):
        executor.spin_once(timeout_sec=0.1)
    node.trigger_deactivate()
    executor.shutdown()
    node.destroy_node()
    probe.destroy_node()
    return got


def test_parameters_declared_with_descriptions_and_validated():
    node = SeqvprLocalizer()
    for p in PARAMS:
        assert node.describe_parameter(p.name).description == p.description
    assert not node.set_parameters([Parameter("top_k", value=0)])[0].successful
    assert node.set_parameters([Parameter("top_k", value=3)])[0].successful
    # localize mode without a map: configure fails, the node stays unconfigured
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    node.destroy_node()


def test_published_images_yield_place_matches(tmp_path):
    from seqvpr_core.cli.main import main

    folder = tmp_path / "route"
    folder.mkdir()
    for i, rgb in enumerate(_frames(12)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rgb[..., ::-1])
    assert main(["build-map", "--images", str(folder), "--model", "pixels+cat", "--window",
                 "3", "--out", str(tmp_path / "map")]) == 0
    got = _run({"map_path": str(tmp_path / "map"), "device": "cpu"}, _frames(6),
               {"matches": (PlaceMatchArray, "/seqvpr_localizer/matches")})
    msg = got["matches"][0]
    assert msg.window_length == 3 and msg.matches and msg.header.frame_id == "camera"


def test_slam_revisit_yields_loop_closure_and_lio_sam_payload():
    frames = _frames(12) * 2
    got = _run({"mode": "slam", "model": "pixels+cat", "window_max": 4, "device": "cpu",
                "loop_exclusion": 1.0, "score_threshold": 0.999, "consistency": 2,
                "publish_lio_sam": True, "queue_size": 64}, frames,
               {"loops": (LoopClosure, "/seqvpr_localizer/loop_closures"),
                "lio": (Float64MultiArray, "lio_loop/loop_closure_detection")})
    loop, lio = got["loops"][0], got["lio"][0]
    assert loop.match_id < loop.query_id
    t_cur, t_prev = lio.data
    assert t_cur - t_prev == pytest.approx(12 * 0.2)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
