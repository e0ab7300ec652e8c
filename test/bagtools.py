"""Write real rosbag2 files (sqlite3 or MCAP) with ``rosbags`` for the tests.

Frames come from the Nordland sample; odometry is synthetic: the train runs
along the x axis at ``SPEED`` m/s, one frame per ``PERIOD_NS``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

NORDLAND = Path(__file__).resolve().parents[2] / "shared" / "data" / "nordland64"
PERIOD_NS = 100_000_000  # 10 Hz camera
SPEED = 10.0  # m/s -> 1 m between frames
T0_NS = 1_700_000_000 * 1_000_000_000
TS = get_typestore(Stores.ROS2_JAZZY)
STORAGE = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def nordland_frames(season: str, n: int, start: int = 0) -> list[np.ndarray]:
    """``n`` uint8 RGB frames of a season, in route order."""
    folder = NORDLAND / season
    paths = sorted(folder.glob("*.png"))[start:start + n]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def _header(stamp_ns: int, frame_id: str = "camera"):
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    return TS.types["std_msgs/msg/Header"](TS.types["builtin_interfaces/msg/Time"](sec, nsec),
                                           frame_id)


def encode_raw(rgb: np.ndarray, encoding: str, pad: int = 0) -> np.ndarray:
    """uint8 RGB [H, W, 3] as the rows of a sensor_msgs/Image in ``encoding``
    (16-bit: big-endian, each byte the 8-bit value) with ``pad`` extra bytes per row:
    uint8 [H, step]."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    mosaic = np.empty(rgb.shape[:2], np.uint8)  # rggb: R G / G B
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
    conv = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, alpha]),
            "bgra8": np.dstack([rgb[..., ::-1], alpha]), "mono8": grey,
            "bayer_rggb8": mosaic,
            "yuv422": cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY),
            "yuv422_yuy2": cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2),
            "32FC1": grey.astype(np.float32) / 255}  # a depth-like image seqvpr refuses
    for name in ("rgb", "bgr", "mono"):
        conv[f"{name}16"] = conv[f"{name}8"].astype(">u2") * 257
    pixels = np.ascontiguousarray(conv[encoding])
    rows = pixels.view(np.uint8).reshape(rgb.shape[0], -1)
    data = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    data[:, :rows.shape[1]] = rows
    return data


def image_msg(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", pad: int = 0):
    """A sensor_msgs/Image in ``encoding`` with ``pad`` extra bytes per row."""
    data = encode_raw(rgb, encoding, pad)
    h, w = rgb.shape[:2]
    return TS.types["sensor_msgs/msg/Image"](
        _header(stamp_ns), h, w, encoding, int(encoding.endswith("16")), data.shape[1],
        data.reshape(-1))


def compressed_msg(rgb: np.ndarray, stamp_ns: int, fmt: str = "png"):
    ok, buf = cv2.imencode("." + fmt.split()[0].split(";")[0].replace("jpeg", "jpg"),
                           rgb[..., ::-1])
    assert ok
    return TS.types["sensor_msgs/msg/CompressedImage"](_header(stamp_ns), fmt,
                                                       buf.reshape(-1))


def odometry_msg(stamp_ns: int, x: float, y: float = 0.0):
    t = TS.types
    pose = t["geometry_msgs/msg/Pose"](t["geometry_msgs/msg/Point"](x, y, 0.0),
                                       t["geometry_msgs/msg/Quaternion"](0.0, 0.0, 0.0, 1.0))
    twist = t["geometry_msgs/msg/Twist"](t["geometry_msgs/msg/Vector3"](SPEED, 0.0, 0.0),
                                         t["geometry_msgs/msg/Vector3"](0.0, 0.0, 0.0))
    return t["nav_msgs/msg/Odometry"](
        _header(stamp_ns, "odom"), "base_link",
        t["geometry_msgs/msg/PoseWithCovariance"](pose, np.zeros(36)),
        t["geometry_msgs/msg/TwistWithCovariance"](twist, np.zeros(36)))


def write_bag(path: Path, frames: list[np.ndarray], storage: str = "sqlite3",
              compressed: str | None = None, encoding: str = "rgb8", pad: int = 0,
              odom: bool = True, topic: str = "/camera/image",
              stamps_ns: list[int] | None = None) -> Path:
    """A rosbag2 directory with one image topic and (optionally) 20 Hz odometry."""
    stamps = stamps_ns or [T0_NS + i * PERIOD_NS for i in range(len(frames))]
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    with Writer(path, version=9, storage_plugin=STORAGE[storage]) as writer:
        img = writer.add_connection(topic, msgtype, typestore=TS)
        od = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=TS) if odom \
            else None
        for rgb, stamp in zip(frames, stamps, strict=True):
            msg = (compressed_msg(rgb, stamp, compressed) if compressed
                   else image_msg(rgb, stamp, encoding, pad))
            writer.write(img, stamp, TS.serialize_cdr(msg, msgtype))
            if od is not None:  # odometry at twice the camera rate, offset by half a period
                for s in (stamp - PERIOD_NS // 4, stamp + PERIOD_NS // 4):
                    x = SPEED * (s - T0_NS) / 1e9
                    writer.write(od, s, TS.serialize_cdr(odometry_msg(s, x),
                                                         "nav_msgs/msg/Odometry"))
    return path
