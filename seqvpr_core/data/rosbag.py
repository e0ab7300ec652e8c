"""rosbag2 recordings (sqlite3 ``.db3`` and MCAP) as a :class:`FrameSource`, without ROS.

Two passes over the image topic: an index pass that reads only each message's
header stamp (first 12 bytes of the CDR payload), then a lazy decode pass that
deserializes just the selected frames, in stamp order. Poses come from a
``nav_msgs/Odometry`` or ``geometry_msgs/PoseStamped`` topic, interpolated to
the frame stamps.

Damage (a recording killed mid-write, a truncated copy) ends a topic early:
the frames read before it are kept, and :attr:`BagFrames.damage` says where
reading stopped.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..inputs import regular_file
from .poses import Pose, interpolate_poses, yaw_degrees
from .ros_image import compressed_to_rgb, raw_to_rgb
from .spacing import KeyframeSpacing

LOG = logging.getLogger(__name__)

RAW_IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (RAW_IMAGE, COMPRESSED_IMAGE)
POSE_TYPES = ("nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped",
              "geometry_msgs/msg/PoseWithCovarianceStamped")
STORAGE_SUFFIXES = (".db3", ".mcap")


class BagError(ValueError):
    """A bag, topic or message that cannot be used; the message names which."""


def _rosbags():
    try:
        from rosbags.rosbag2 import Reader
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise ImportError("reading rosbags needs the `rosbags` package: pip install rosbags") \
            from None
    return Reader, get_typestore(Stores.ROS2_JAZZY)


def message_to_rgb(msg, msgtype: str) -> np.ndarray:
    """A deserialized Image / CompressedImage (any library's class) -> uint8 RGB [H, W, 3]."""
    if msgtype == COMPRESSED_IMAGE:
        return compressed_to_rgb(msg.data, msg.format)
    return raw_to_rgb(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                      bool(msg.is_bigendian))


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp of a CDR-serialized message whose first field is a std_msgs/Header."""
    endian = "<" if raw[1] & 1 else ">"  # encapsulation id: 0x0001 CDR_LE, 0x0000 CDR_BE
    sec, nsec = struct.unpack(endian + "iI", bytes(raw[4:12]))
    return sec * 1_000_000_000 + nsec


def stamp_name(stamp_ns: int) -> str:
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"


@dataclass
class BagFrames:
    """Frames of one image topic, after keyframe spacing (a :class:`FrameSource`)."""

    path: Path
    topic: str
    msgtype: str
    stamps_ns: np.ndarray  # int64 [N], increasing
    ordinals: np.ndarray  # int64 [N]: each frame's position among the topic's messages
    poses: list[Pose | None]
    odom_topic: str | None = None
    damage: list[str] = field(default_factory=list)  # where reading stopped early, if it did
    total_messages: int = 0  # image messages read before any damage, before spacing

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.topic}"

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @property
    def names(self) -> list[str]:
        return [stamp_name(int(s)) for s in self.stamps_ns]

    @property
    def positions(self) -> np.ndarray | None:
        """float64 [N, 2] (nan where unknown), or None without any pose."""
        if all(p is None for p in self.poses):
            return None
        return np.array([p[:2] if p is not None else (np.nan, np.nan) for p in self.poses])

    def pose(self, i: int) -> Pose | None:
        return self.poses[i]

    def batches(self, batch_size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """(first index, decoded frames) in stamp order, decoding only selected messages."""
        batch: list[np.ndarray] = []
        emitted = 0
        for frame in self._frames():
            batch.append(frame)
            if len(batch) == batch_size:
                yield emitted, batch
                emitted, batch = emitted + len(batch), []
        if batch:
            yield emitted, batch

    def _frames(self) -> Iterator[np.ndarray]:
        if not len(self):
            return
        Reader, typestore = _rosbags()
        # bag order can differ from stamp order: hold early arrivals until their turn
        slot_of = {int(k): i for i, k in enumerate(self.ordinals)}
        pending: dict[int, np.ndarray] = {}
        nxt = 0
        with _open(self.path, Reader) as reader:
            conns = _topic_connections(reader, self.topic, IMAGE_TYPES, self.path)
            for ordinal, (conn, _, raw) in enumerate(reader.messages(connections=conns)):
                slot = slot_of.get(ordinal)
                if slot is None:
                    continue
                pending[slot] = _decode(typestore, raw, conn.msgtype, self.topic,
                                        int(self.stamps_ns[slot]))
                while nxt in pending:
                    yield pending.pop(nxt)
                    nxt += 1
                if nxt == len(self):
                    return  # stop before any damaged tail the index pass already met
        if nxt < len(self):
            raise BagError(f"{self.path}: topic {self.topic} yielded {nxt} of {len(self)} "
                           "indexed frames on the second read; was the bag modified?")


def read_bag(path: str | os.PathLike, topic: str, odom_topic: str | None = None,
             spacing: KeyframeSpacing | None = None, max_pose_gap_s: float = 1.0
             ) -> BagFrames:
    """Index ``topic`` of a rosbag2 directory or storage file (``.db3``/``.mcap``).

    Raises :class:`BagError` naming the topic for a missing topic, a wrong
    message type, an unsupported encoding (checked on the first frame) or a
    bag with no readable frames.
    """
    path = Path(path)
    spacing = spacing or KeyframeSpacing()
    if spacing.min_distance_m > 0 and not odom_topic:
        raise BagError(f"keyframe spacing by distance ({spacing.min_distance_m} m) needs "
                       "an odometry or pose topic")
    Reader, typestore = _rosbags()
    damage: list[str] = []
    stamps, first = [], None
    with _open(path, Reader) as reader:
        conns = _topic_connections(reader, topic, IMAGE_TYPES, path)
        msgtype = conns[0].msgtype
        try:
            for conn, bag_ns, raw in reader.messages(connections=conns):
                stamp = header_stamp_ns(raw)
                stamps.append(stamp if stamp > 0 else bag_ns)  # unstamped: receive time
                if first is None:
                    first = (raw, conn.msgtype, stamps[-1])
        except Exception as exc:  # noqa: BLE001  (storage backends raise many types)
            damage.append(_damage_note(path, topic, len(stamps), exc))
        poses_raw = _read_poses(reader, odom_topic, typestore, path, damage) if odom_topic \
            else None
    if first is None:
        raise BagError(f"{path}: topic {topic} has no readable {msgtype.split('/')[-1]} "
                       "messages" + (f" ({damage[0]})" if damage else ""))
    _decode(typestore, first[0], first[1], topic, first[2])  # unsupported encoding: fail now
    all_stamps = np.asarray(stamps, dtype=np.int64)
    order = np.argsort(all_stamps, kind="stable")
    all_stamps = all_stamps[order]
    poses = [None] * len(all_stamps)
    if poses_raw is not None:
        poses = interpolate_poses(*poses_raw, all_stamps, max_gap_s=max_pose_gap_s)
        if all(p is None for p in poses):
            LOG.warning("%s: no frame of %s falls inside the poses of %s", path, topic,
                        odom_topic)
    keep = spacing.select(all_stamps.tolist(), poses)
    frames = BagFrames(path, topic, msgtype, all_stamps[keep], order[keep],
                       [poses[i] for i in keep], odom_topic, damage, len(all_stamps))
    for note in damage:
        LOG.warning("%s; using the %d frames read before it", note, len(frames))
    return frames


def _open(path: Path, Reader):
    """An opened-on-enter rosbags Reader; a bag directory whose recorder died before
    writing metadata.yaml is read through its single storage file."""
    if not path.is_dir():  # a FIFO or device named .mcap would block the reader
        regular_file(path, "rosbag")
    target = path
    if path.is_dir() and not (path / "metadata.yaml").exists():
        files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
        if len(files) != 1:
            raise BagError(f"{path} has no metadata.yaml and {len(files)} storage files "
                           f"({', '.join(STORAGE_SUFFIXES)}); not a readable rosbag2")
        LOG.warning("%s has no metadata.yaml; reading %s directly", path, files[0].name)
        target = files[0]
    return _Opened(path, target, Reader)


class _Opened:
    """Context manager: an open rosbags Reader; open errors become :class:`BagError`."""

    def __init__(self, path: Path, target: Path, Reader) -> None:
        self.path, self.target, self.Reader = path, target, Reader

    def __enter__(self):
        from .mcap_salvage import open_reader

        try:
            self.reader = self.Reader(self.target)
            open_reader(self.reader)
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"cannot open rosbag {self.path}: {exc} (damaged or not a rosbag2; "
                           "sqlite3 bags cut short cannot be read, MCAP bags are read up "
                           "to the damage)") from exc
        return self.reader

    def __exit__(self, *exc) -> None:
        self.reader.close()


def _topic_connections(reader, topic: str, types: tuple[str, ...], path: Path) -> list:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        available = ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections) or "none"
        raise BagError(f"{path}: topic {topic} is not in the bag; topics: {available}")
    wrong = sorted({c.msgtype for c in conns if c.msgtype not in types})
    if wrong:
        raise BagError(f"{path}: topic {topic} carries {', '.join(wrong)}; expected one of "
                       f"{', '.join(types)}")
    return conns


def _decode(typestore, raw, msgtype: str, topic: str, stamp_ns: int) -> np.ndarray:
    try:
        return message_to_rgb(typestore.deserialize_cdr(raw, msgtype), msgtype)
    except Exception as exc:  # noqa: BLE001
        raise BagError(f"topic {topic}, {msgtype} at stamp {stamp_name(stamp_ns)}: "
                       f"{exc}") from exc


def _read_poses(reader, topic: str, typestore, path: Path, damage: list[str]):
    """(stamps int64 [N], xy [N, 2], heading degrees [N]) of a pose topic; samples
    with a non-finite position or orientation are left out (with a warning), never
    interpolated."""
    conns = _topic_connections(reader, topic, POSE_TYPES, path)
    stamps, xy, heading = [], [], []
    invalid = 0
    try:
        for conn, _, raw in reader.messages(connections=conns):
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            pose = msg.pose if conn.msgtype.endswith("PoseStamped") else msg.pose.pose
            q = pose.orientation
            h = yaw_degrees(q.x, q.y, q.z, q.w)
            if not all(map(math.isfinite, (pose.position.x, pose.position.y, h))):
                invalid += 1
                continue
            stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            xy.append((pose.position.x, pose.position.y))
            heading.append(h)
    except Exception as exc:  # noqa: BLE001
        damage.append(_damage_note(path, topic, len(stamps), exc))
    if invalid:
        LOG.warning("%s: %d messages of %s have a non-finite pose; left out", path,
                    invalid, topic)
    if not stamps:
        raise BagError(f"{path}: pose topic {topic} has no readable messages"
                       + (f" ({damage[-1]})" if damage else ""))
    return (np.asarray(stamps, dtype=np.int64), np.asarray(xy, dtype=np.float64),
            np.asarray(heading, dtype=np.float64))


def _damage_note(path: Path, topic: str, n_read: int, exc: Exception) -> str:
    return (f"{path}: topic {topic}: reading stopped after {n_read} messages, the bag is "
            f"damaged or truncated ({type(exc).__name__}: {exc})")
