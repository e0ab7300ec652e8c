"""The robot side of the launch tests: a camera, an odometry source and every consumer of
the node's outputs, as real ROS publishers, subscribers and service clients.

Frames come from ``$SEQVPR_NORDLAND`` (default ``../shared/data/nordland64`` next to
the repository), the 2400-frame summer/winter Nordland thumbnails.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from nav_msgs.msg import Odometry
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from seqvpr_ros.msg import LoopClosure, PlaceMatchArray, SequenceDescriptor
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

REPO = Path(__file__).resolve().parents[2]
NORDLAND = Path(os.environ.get("SEQVPR_NORDLAND", REPO.parent / "shared" / "data" / "nordland64"))
CONFIG = REPO / "seqvpr_core" / "configs" / "nordland_lite0_cat.yaml"  # the Nordland model
NODE = "/seqvpr_localizer"
OUTPUTS = {"matches": (PlaceMatchArray, f"{NODE}/matches"),
           "loops": (LoopClosure, f"{NODE}/loop_closures"),
           "descriptors": (SequenceDescriptor, f"{NODE}/descriptors"),
           "diagnostics": (DiagnosticArray, "/diagnostics"),
           "lio": (Float64MultiArray, "lio_loop/loop_closure_detection"),
           "markers": (MarkerArray, f"{NODE}/markers")}
TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE,
               "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE,
               "cleanup": Transition.TRANSITION_CLEANUP}
SHUTDOWN = {"unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
            "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
            "active": Transition.TRANSITION_ACTIVE_SHUTDOWN}


def nordland(season: str, start: int = 0, count: int = 2400) -> list[np.ndarray]:
    """uint8 RGB frames of a season, in route order."""
    paths = sorted((NORDLAND / season).glob("images-*.png"))[start:start + count]
    if len(paths) < count:
        raise FileNotFoundError(f"{NORDLAND / season}: {len(paths)} frames, need {count} "
                                "(set SEQVPR_NORDLAND to the nordland64 folder)")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def image(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", **fields) -> Image:
    """An Image of ``rgb`` in rgb8/bgr8/mono8; ``fields`` override any header field
    (height, width, step, data, encoding) to make it malformed."""
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1],
              "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)}.get(encoding, rgb)
    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding=encoding, step=pixels[0].size,
                data=np.ascontiguousarray(pixels).tobytes())
    for name, value in fields.items():
        setattr(msg, name, value)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera"
    return msg


def compressed(rgb: np.ndarray, stamp_ns: int, fmt: str = "jpeg", data: bytes | None = None):
    """A CompressedImage as image_transport writes it (BGR inside)."""
    if data is None:
        ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[..., ::-1])
        data = buf.tobytes()
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera"
    return msg


def odometry(stamp_ns: int, x: float) -> Odometry:
    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def diagnostic_values(msg: DiagnosticArray) -> dict[str, str]:
    status = msg.status[0]
    return {"level": int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
            else int(status.level), "message": status.message,
            **{kv.key: kv.value for kv in status.values}}


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


class Probe:
    """Publishes frames and odometry, records every output with its arrival time (ns,
    ROS clock), drives the lifecycle, parameters and save_map; spins in a thread."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("seqvpr_probe")
        self.got: dict[str, list] = defaultdict(list)  # output -> [(arrival ns, msg)]
        reliable = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
        for name, (msg_type, topic) in OUTPUTS.items():
            self.node.create_subscription(msg_type, topic,
                                          lambda m, name=name: self._record(name, m), reliable)
        self.pub = {"image": self.node.create_publisher(Image, "image", qos_profile_sensor_data),
                    "compressed": self.node.create_publisher(CompressedImage, "image/compressed",
                                                             qos_profile_sensor_data),
                    "odom": self.node.create_publisher(Odometry, "odom", qos_profile_sensor_data)}
        self._clients = {"change": self.node.create_client(ChangeState, f"{NODE}/change_state"),
                         "state": self.node.create_client(GetState, f"{NODE}/get_state"),
                         "params": self.node.create_client(SetParameters,
                                                           f"{NODE}/set_parameters"),
                         "save": self.node.create_client(Trigger, f"{NODE}/save_map")}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._executor.spin, daemon=True)
        self._spin.start()

    def _record(self, name: str, msg) -> None:
        self.got[name].append((self.now_ns(), msg))

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def close(self) -> None:
        self._executor.shutdown()
        self._spin.join(timeout=5)
        self.node.destroy_node()

    def count(self, name: str) -> int:
        return len(self.got[name])

    def since(self, name: str, start: int) -> list:
        return [m for _, m in self.got[name][start:]]

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                got = {name: len(msgs) for name, msgs in self.got.items()}
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                     f"received so far: {got}")
            time.sleep(0.05)

    def subscribed(self, topic: str = "image", timeout: float = 30.0, count: int = 1) -> None:
        """Wait until the node's subscriptions to ``topic`` number ``count`` (discovery),
        so that no frame is published into the void."""
        pub = self.pub[{"image/compressed": "compressed"}.get(topic, topic)]
        self.wait_for(lambda: pub.get_subscription_count() == count, timeout,
                      f"{count} subscribers on {topic}")

    def _call(self, name: str, request, timeout: float = 120.0):
        client = self._clients[name]
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {client.srv_name} did not appear")
        future = client.call_async(request)
        self.wait_for(future.done, timeout, f"{client.srv_name}")
        return future.result()

    def state(self) -> str:
        return self._call("state", GetState.Request()).current_state.label

    def transition(self, name: str) -> bool:
        """``configure``, ``activate``, ``deactivate``, ``cleanup`` or ``shutdown`` (from
        the current state)."""
        request = ChangeState.Request()
        request.transition.id = SHUTDOWN[self.state()] if name == "shutdown" \
            else TRANSITIONS[name]
        return self._call("change", request).success

    def set_parameters(self, **values) -> list:
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return [r.successful for r in self._call("params", request).results]

    def save_map(self):
        return self._call("save", Trigger.Request())

    def stream(self, frames, rate_hz: float | None, stamps_ns=None, fmt: str | None = None,
               odom_x=None, on_frame=None, ahead: int | None = None) -> list[int]:
        """Publish ``frames`` (RGB) at ``rate_hz`` (None: as fast as possible) as rgb8
        Images, or CompressedImages in ``fmt``; stamps: the given ones, else the publish
        time. ``ahead``: never more than this many frames ahead of the matches that
        came back (on a busy machine the node's queue must not overflow where a test
        compares every window). Returns the stamps used."""
        matches0 = self.count("matches")
        period = 1.0 / rate_hz if rate_hz else 0.0
        next_t, used = time.monotonic(), []
        topic = "compressed" if fmt else "image"

        def make(rgb, stamp):
            return compressed(rgb, stamp, fmt) if fmt else image(rgb, stamp)

        for i, rgb in enumerate(frames):
            if ahead is not None:
                self.wait_for(lambda i=i: self.count("matches") - matches0 >= i - ahead, 120,
                              "the node to catch up")
            if period:
                time.sleep(max(0.0, next_t - time.monotonic()))
                next_t += period
            stamp = stamps_ns[i] if stamps_ns is not None else self.now_ns()
            if odom_x is not None:
                self.pub["odom"].publish(odometry(stamp, odom_x[i]))
            self.pub[topic].publish(make(rgb, stamp))
            used.append(stamp)
            if on_frame is not None:
                on_frame(i)
        return used
