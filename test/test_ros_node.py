"""The rclpy node in-process, and ``ros2 launch`` as a user runs it.

Needs ROS 2 and this package built (``colcon build``), the workspace sourced, and a run
from outside the source tree (``colcon test`` does that): the source ``seqvpr_ros`` has
no ``msg``. Skipped where rclpy is absent (a plain pip install); in CI a skip is a
failure (``conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import DEMO_DATA, REPO, copy_frames

from seqvpr_core.data import read_image

pytestmark = pytest.mark.ros
ROBOT_CV_BRIDGE = Path(os.environ.get(
    "SEQVPR_ROBOT_CV_BRIDGE", REPO.parent / "shared" / "ros2" / "robot-cv_bridge-numpy1.tar.gz"))


@pytest.fixture(scope="module")
def rclpy():
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: source ROS 2 Humble "
                                                "or Jazzy and a workspace with seqvpr_ros built")
    pytest.importorskip("seqvpr_ros.msg", reason="seqvpr_ros messages are not importable: "
                        "colcon build, source the workspace, run from outside the source tree")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def frames():
    return [read_image(p) for p in sorted((DEMO_DATA / "summer").glob("*.png"))[100:124]]


def _image(rgb, stamp_ns: int):
    from sensor_msgs.msg import Image

    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                step=rgb.shape[1] * 3, data=rgb.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera"
    return msg


def _run(rclpy, overrides: dict, frames, topics: dict) -> dict[str, list]:
    """Configure + activate the node, publish ``frames``, collect messages on ``topics``."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from seqvpr_ros.node import SeqvprLocalizer

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
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)  # discovery
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


def test_parameters_declared_with_descriptions_and_validated(rclpy):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from seqvpr_ros.node import SeqvprLocalizer
    from seqvpr_ros.params import PARAMS

    node = SeqvprLocalizer()
    for p in PARAMS:
        assert node.describe_parameter(p.name).description == p.description
    assert not node.set_parameters([Parameter("top_k", value=0)])[0].successful
    assert node.set_parameters([Parameter("top_k", value=3)])[0].successful
    # localize mode without a map: configure fails, the node stays unconfigured
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    node.destroy_node()


def test_an_unavailable_transition_is_refused_and_the_node_lives_on(rclpy):
    """rclpy raises out of spin for a transition id the state does not have."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.executors import SingleThreadedExecutor

    from seqvpr_ros.node import SeqvprLocalizer

    node = SeqvprLocalizer()
    client = node.create_client(ChangeState, "/seqvpr_localizer/change_state")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    request = ChangeState.Request()
    request.transition.id = Transition.TRANSITION_ACTIVATE  # not from unconfigured
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=10)
    assert future.result().success is False
    assert node._state_machine.current_state[1] == "unconfigured"
    executor.shutdown()
    node.destroy_node()


def test_published_images_yield_place_matches(rclpy, frames, tmp_path):
    from seqvpr_ros.msg import PlaceMatchArray

    from seqvpr_core.cli.main import main

    copy_frames(DEMO_DATA / "summer", tmp_path / "route", 112)
    assert main(["build-map", "--images", str(tmp_path / "route"), "--model", "pixels+cat",
                 "--window", "3", "--out", str(tmp_path / "map")]) == 0
    got = _run(rclpy, {"map_path": str(tmp_path / "map"), "device": "cpu"}, frames[:6],
               {"matches": (PlaceMatchArray, "/seqvpr_localizer/matches")})
    msg = got["matches"][0]
    assert msg.window_length == 3 and msg.matches and msg.header.frame_id == "camera"


def test_slam_revisit_yields_loop_closure_and_lio_sam_payload(rclpy, frames):
    from seqvpr_ros.msg import LoopClosure
    from std_msgs.msg import Float64MultiArray

    got = _run(rclpy, {"mode": "slam", "model": "pixels+cat", "window_max": 4, "device": "cpu",
                       "loop_exclusion": 1.0, "score_threshold": 0.999, "consistency": 2,
                       "publish_lio_sam": True, "queue_size": 64}, frames[:12] * 2,
               {"loops": (LoopClosure, "/seqvpr_localizer/loop_closures"),
                "lio": (Float64MultiArray, "lio_loop/loop_closure_detection")})
    loop, lio = got["loops"][0], got["lio"][0]
    assert loop.match_id < loop.query_id
    t_cur, t_prev = lio.data
    assert t_cur - t_prev == pytest.approx(12 * 0.2)


def _ros2() -> str:
    ros2 = shutil.which("ros2")
    if ros2 is None:
        pytest.skip("ros2 is not on PATH: source ROS 2 and the workspace")
    return ros2


def test_ctrl_c_on_ros2_launch_ends_cleanly(rclpy, tmp_path):
    """A terminal's Ctrl-C reaches the launch and the node at once (one process group),
    and the launch forwards a second SIGINT: the node still exits with 0."""
    from seqvpr_core.cli.main import main

    copy_frames(DEMO_DATA / "summer", tmp_path / "route", 30)
    assert main(["build-map", "--images", str(tmp_path / "route"), "--model", "pixels+cat",
                 "--window", "3", "--out", str(tmp_path / "map")]) == 0
    log = tmp_path / "launch.log"
    with log.open("wb") as out:
        # its own namespace: this process's lifecycle services of the in-process nodes
        # above may linger in discovery under the default name
        launch = subprocess.Popen([_ros2(), "launch", "seqvpr_ros", "localize.launch.py",
                                   f"map:={tmp_path / 'map'}", "device:=cpu",
                                   "namespace:=ctrl_c"],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"active: Image on image" not in log.read_bytes():
            assert launch.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        os.killpg(launch.pid, signal.SIGINT)
        assert launch.wait(timeout=60) == 0, log.read_text()
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
    text = log.read_text()
    assert "process has finished cleanly" in text and "process has died" not in text, text


def test_the_node_never_imports_cv_bridge_so_a_robots_numpy1_build_is_harmless(rclpy, tmp_path):
    """The robot's cv_bridge (built for numpy 1.x, as every binary Jazzy ships it) fails
    under our numpy 2; the node does not import it, so it neither prints numpy's
    traceback nor crashes on an image only cv_bridge would have tried."""
    if not ROBOT_CV_BRIDGE.is_file():
        pytest.skip(f"{ROBOT_CV_BRIDGE} is not present (set SEQVPR_ROBOT_CV_BRIDGE)")
    with tarfile.open(ROBOT_CV_BRIDGE) as tar:
        tar.extractall(tmp_path, filter="data")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    broken = subprocess.run(
        [sys.executable, "-c", "import numpy as np; from cv_bridge import CvBridge; "
         "from sensor_msgs.msg import Image; CvBridge().imgmsg_to_cv2(Image(height=1, "
         "width=1, encoding='mono8', step=1, data=b'x'), 'rgb8')"],
        env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0 and "NumPy 1.x" in broken.stderr  # the robot's cv_bridge
    node = subprocess.run(
        [sys.executable, "-c", "import sys, seqvpr_ros.node; "
         "print('cv_bridge' in sys.modules, seqvpr_ros.node.__file__)"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert node.returncode == 0, node.stderr
    imported, where = node.stdout.split()
    assert imported == "False" and "NumPy" not in node.stderr
    assert Path(where).parent != REPO / "seqvpr_ros"  # the built package, not the source
