"""ROS image messages -> the pipeline's frame format (uint8 RGB [H, W, 3]).

Works on plain fields (bytes, encoding, step), not on message classes, so the
rosbag reader (``rosbags`` messages) and the ROS node (rclpy messages, with or
without cv_bridge) share one conversion. No ROS import here.
"""

from __future__ import annotations

import cv2
import numpy as np

from .images import decode_bytes

# encoding -> (channels, bytes per channel, cv2 conversion to RGB or None)
RAW_ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageEncodingError(ValueError):
    """A message's encoding is not one the pipeline can read, or its data is inconsistent."""


def raw_to_rgb(data, height: int, width: int, encoding: str, step: int,
               is_bigendian: bool = False) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> uint8 RGB [H, W, 3].

    ``data`` is anything exposing the buffer protocol (bytes, ``array.array``,
    numpy). ``step`` may exceed ``width * pixel size`` (padded rows). 16-bit
    mono keeps its top byte, as a viewer would show it.
    """
    if encoding not in RAW_ENCODINGS:
        raise ImageEncodingError(f"image encoding {encoding!r} is not supported; supported: "
                                 f"{', '.join(RAW_ENCODINGS)} (raw) and "
                                 f"sensor_msgs/CompressedImage {'/'.join(COMPRESSED_FORMATS)}")
    channels, depth, conversion = RAW_ENCODINGS[encoding]
    row = width * channels * depth
    if height < 1 or width < 1 or step < row:
        raise ImageEncodingError(f"{encoding} image {width}x{height} with step {step}: "
                                 f"need step >= {row}")
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buf.size < step * (height - 1) + row:
        raise ImageEncodingError(f"{encoding} image {width}x{height} step {step} needs "
                                 f"{step * (height - 1) + row} bytes, message has {buf.size}")
    rows = np.lib.stride_tricks.as_strided(buf, (height, row), (step, 1))
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        image = (np.ascontiguousarray(rows).view(dtype) >> 8).astype(np.uint8)
    else:
        image = np.ascontiguousarray(rows)
    image = image.reshape(height, width, channels)
    if conversion is None:
        return image
    return cv2.cvtColor(image, conversion)


def compressed_to_rgb(data, fmt: str) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` fields -> uint8 RGB [H, W, 3].

    ``fmt`` is ``jpeg``/``png`` or image_transport's ``"bgr8; jpeg compressed bgr8"``
    form. image_transport encodes colour as BGR, which is what OpenCV decodes to.
    """
    kind = _compressed_kind(fmt)
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    image = decode_bytes(buf)
    if image is None:
        raise ImageEncodingError(f"cannot decode {kind} CompressedImage ({buf.size} bytes): "
                                 "empty or damaged data")
    return image


def _compressed_kind(fmt: str) -> str:
    text = fmt.strip().lower()
    if "compresseddepth" in text:
        raise ImageEncodingError(f"CompressedImage format {fmt!r} is a depth image; seqvpr "
                                 "needs colour or grayscale images")
    # "bgr8; jpeg compressed bgr8" -> "jpeg"; a bare "png" stays "png"
    kind = text.split(";")[-1].split()[0] if text else ""
    if kind not in COMPRESSED_FORMATS:
        raise ImageEncodingError(f"CompressedImage format {fmt!r} is not supported; "
                                 f"supported: {', '.join(COMPRESSED_FORMATS)}")
    return kind
