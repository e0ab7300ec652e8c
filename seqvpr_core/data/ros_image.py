"""ROS image messages -> the pipeline's frame format (uint8 RGB [H, W, 3]).

Works on plain fields (bytes, encoding, step), not on message classes, so the
rosbag reader (``rosbags`` messages) and the ROS node (rclpy messages) share one
conversion, and one validation: every field is checked against the others in
Python before numpy or OpenCV sees the data, so a corrupt message is an
:class:`ImageEncodingError` that names the problem, never a crash or an OpenCV
assertion. It covers the encodings cameras publish (what cv_bridge would convert
for a colour or grey consumer), so the node needs no cv_bridge. No ROS import here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from .images import decode_bytes


@dataclass(frozen=True)
class RawEncoding:
    channels: int  # values per pixel in the message
    depth: int  # bytes per value: 16-bit images keep their top byte, as a viewer shows them
    to_rgb: int | None  # cv2 conversion of the 8-bit [H, W, channels] array; None: RGB already
    even_width: bool = False  # 4:2:2 chroma pairs two pixels


def _table() -> dict[str, RawEncoding]:
    table = {}
    for depth in (1, 2):
        bits = 8 * depth
        table |= {f"rgb{bits}": RawEncoding(3, depth, None),
                  f"bgr{bits}": RawEncoding(3, depth, cv2.COLOR_BGR2RGB),
                  f"rgba{bits}": RawEncoding(4, depth, cv2.COLOR_RGBA2RGB),
                  f"bgra{bits}": RawEncoding(4, depth, cv2.COLOR_BGRA2RGB),
                  f"mono{bits}": RawEncoding(1, depth, cv2.COLOR_GRAY2RGB)}
        # OpenCV names a Bayer pattern by its second row: ROS rggb is OpenCV BG
        for ros, cv in (("rggb", "BG"), ("bggr", "RG"), ("gbrg", "GR"), ("grbg", "GB")):
            conversion = getattr(cv2, f"COLOR_Bayer{cv}2RGB")
            table[f"bayer_{ros}{bits}"] = RawEncoding(1, depth, conversion)
    table["yuv422"] = RawEncoding(2, 1, cv2.COLOR_YUV2RGB_UYVY, even_width=True)
    table["yuv422_yuy2"] = RawEncoding(2, 1, cv2.COLOR_YUV2RGB_YUY2, even_width=True)
    return table


RAW_ENCODINGS: dict[str, RawEncoding] = _table()
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
_GENERIC = re.compile(r"^(8|16|32|64)(U|S|F)C\d*$", re.IGNORECASE)  # 32FC1, 16UC1, 8UC3, ...


class ImageEncodingError(ValueError):
    """A message's encoding is not one the pipeline can read, or its data is inconsistent."""


def _supported() -> str:
    return (f"supported: {', '.join(RAW_ENCODINGS)} (sensor_msgs/Image) and "
            f"{'/'.join(COMPRESSED_FORMATS)} (sensor_msgs/CompressedImage)")


def check_raw(height: int, width: int, encoding: str, step: int, size: int) -> RawEncoding:
    """The encoding of a consistent ``sensor_msgs/Image`` header; ImageEncodingError
    naming the first problem otherwise (``size``: bytes in ``data``)."""
    spec = RAW_ENCODINGS.get(encoding)
    if spec is None:
        if _GENERIC.match(encoding):
            raise ImageEncodingError(
                f"image encoding {encoding!r} is a depth, float or generic matrix image; "
                f"place recognition needs a colour or grey camera image; {_supported()}")
        raise ImageEncodingError(f"image encoding {encoding!r} is not supported; {_supported()}")
    if height < 1 or width < 1:
        raise ImageEncodingError(f"{encoding} image is empty ({width}x{height} pixels)")
    if spec.even_width and width % 2:
        raise ImageEncodingError(f"{encoding} image {width}x{height}: 4:2:2 needs an even width")
    row = width * spec.channels * spec.depth
    if step < row:
        raise ImageEncodingError(f"{encoding} image {width}x{height}: step {step} is shorter "
                                 f"than one row ({row} bytes)")
    if size != step * height:
        raise ImageEncodingError(f"{encoding} image {width}x{height} step {step}: data has "
                                 f"{size} bytes, height x step is {step * height}"
                                 + (" (truncated)" if size < step * height else ""))
    return spec


def raw_to_rgb(data, height: int, width: int, encoding: str, step: int,
               is_bigendian: bool = False) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> uint8 RGB [H, W, 3].

    ``data`` is anything exposing the buffer protocol (bytes, ``array.array``,
    numpy). ``step`` may exceed ``width * pixel size`` (padded rows).
    """
    data = memoryview(data).cast("B")
    spec = check_raw(int(height), int(width), str(encoding), int(step), data.nbytes)
    buf = np.frombuffer(data, dtype=np.uint8).reshape(height, step)
    rows = buf[:, :width * spec.channels * spec.depth]
    if spec.depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        image = (np.ascontiguousarray(rows).view(dtype) >> 8).astype(np.uint8)
    else:
        image = np.ascontiguousarray(rows)
    image = image.reshape(height, width, spec.channels)
    if spec.to_rgb is None:
        return image
    return cv2.cvtColor(image if spec.channels > 1 else image[..., 0], spec.to_rgb)


def compressed_to_rgb(data, fmt: str) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` fields -> uint8 RGB [H, W, 3].

    ``fmt`` is ``jpeg``/``png`` or image_transport's ``"bgr8; jpeg compressed bgr8"``
    form. image_transport encodes colour as BGR, which is what OpenCV decodes to.
    """
    kind = _compressed_kind(fmt)
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if not buf.size:
        raise ImageEncodingError(f"{kind} CompressedImage is empty (0 bytes)")
    image = decode_bytes(buf)
    if image is None or not image.size:
        raise ImageEncodingError(f"cannot decode {kind} CompressedImage ({buf.size} bytes): "
                                 "damaged or not a " + kind)
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
