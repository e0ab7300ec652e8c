"""Decoding image files into the pipeline's frame format: uint8 [H, W, 3] RGB."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class ImageDecodeError(ValueError):
    """An image file exists but cannot be decoded."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as uint8 RGB [H, W, 3]; grayscale and alpha are converted."""
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8)
    image = decode_bytes(data)
    if image is None:
        raise ImageDecodeError(f"cannot decode image {path} ({data.size} bytes): the file is "
                               "empty, truncated or not an image")
    return image


def decode_bytes(data: np.ndarray) -> np.ndarray | None:
    """Encoded image bytes (PNG, JPEG, ...) -> uint8 RGB [H, W, 3], None if undecodable."""
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        return None
    if image.dtype == np.uint16:  # 16-bit PNG: keep the top byte
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
