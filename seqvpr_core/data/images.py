"""The pipeline's frame format, uint8 [H, W, 3] RGB: decoding image files into it, and
checking frames handed to the stream.

Decoding reads the image's size from its header first: a picture larger than
:data:`~seqvpr_core.limits.MAX_IMAGE_PIXELS` (a valid 20000x20000 PNG would decode to
1.2 GB, then twice that for the colour conversion) is refused before any pixel is
decoded, since every model here takes 64x128 to 384x384 inputs.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np

from ..inputs import InputError, describe_os_error, file_kind
from ..limits import MAX_IMAGE_PIXELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class ImageDecodeError(ValueError):
    """An image file exists but cannot be decoded (or is too large to)."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as uint8 RGB [H, W, 3]; grayscale and alpha are converted."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a FIFO would block the read forever
            raise InputError(f"image {path} is {file_kind(mode)}, not an image file")
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {describe_os_error(exc)}") from None
    image = decode_bytes(data, str(path))
    if image is None:
        raise ImageDecodeError(f"cannot decode image {path} ({data.size} bytes): the file is "
                               "empty, truncated or not an image")
    return image


def decode_bytes(data: np.ndarray, what: str = "image") -> np.ndarray | None:
    """Encoded image bytes (PNG, JPEG, ...) -> uint8 RGB [H, W, 3], None if undecodable;
    :class:`ImageDecodeError` for an image over the pixel budget."""
    if not data.size:
        return None
    _check_header_size(data, what)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.dtype == np.uint16:  # 16-bit PNG: keep the top byte
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:  # 32-bit float TIFF and the like
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] != 3:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_header_size(data: np.ndarray, what: str) -> None:
    """Width x height from the header alone: PNG and JPEG read here (microseconds),
    other formats by Pillow, which decodes no pixels to tell it either."""
    size = _png_or_jpeg_size(data[:1 << 16].tobytes())
    if size is None:
        size = _pillow_size(data, what)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        width, height = size
        raise ImageDecodeError(f"{what} is {width}x{height} pixels "
                               f"({width * height / 1e6:.0f} MP), {_TOO_LARGE}")


def _png_or_jpeg_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(head) and head[i] == 0xFF:  # JPEG segments up to a start of frame
        marker, length = head[i + 1], struct.unpack(">H", head[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def _pillow_size(data: np.ndarray, what: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns about sizes we refuse anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.tobytes())) as im:
                return im.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far past ours
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels[1]) / 1e6:.0f} MP" if pixels else "huge"
        raise ImageDecodeError(f"{what} is {size}, {_TOO_LARGE}") from None
    except Exception:  # noqa: BLE001  (a format Pillow does not know: OpenCV decides)
        return None


_TOO_LARGE = (f"more than seqvpr decodes ({MAX_IMAGE_PIXELS / 1e6:.0f} MP); downscale it "
              "first (the models take 64x128 to 384x384 inputs)")


def check_frame(frame: object, what: str = "frame") -> np.ndarray:
    """``frame`` as the stream takes it, uint8 RGB [H, W, 3] and C-contiguous (a
    ``bgr[..., ::-1]`` view is copied), or ValueError saying what it is instead."""
    if not isinstance(frame, np.ndarray):
        got = "None" if frame is None else f"a {type(frame).__name__}"
        raise ValueError(f"{what} is {got}; expected a numpy uint8 RGB image [H, W, 3]")
    if frame.dtype != np.uint8:
        raise ValueError(f"{what} has dtype {frame.dtype}; expected uint8 RGB values 0..255")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{what} has shape {frame.shape}; expected [H, W, 3] RGB (convert "
                         "grayscale or RGBA with cv2.cvtColor first)")
    height, width = frame.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"{what} is empty ({width}x{height} pixels)")
    if height * width > MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} is {width}x{height} pixels, more than seqvpr takes "
                         f"({MAX_IMAGE_PIXELS / 1e6:.0f} MP); downscale it first")
    return np.ascontiguousarray(frame)
