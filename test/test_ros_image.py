"""ROS image fields -> RGB frames: every camera encoding, and every malformed message
refused in Python with a message naming the problem (the node and the bag reader share
this converter; no ROS needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bagtools import encode_raw  # noqa: E402

from seqvpr_core.data import ImageEncodingError, compressed_to_rgb, raw_to_rgb  # noqa: E402
from seqvpr_core.data.images import read_image  # noqa: E402
from seqvpr_core.data.ros_image import RAW_ENCODINGS  # noqa: E402

FRAME = Path(__file__).resolve().parents[1] / "seqvpr_core" / "demo_data" / "nordland" / \
    "summer" / "images-15500.png"


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A real 64x32 frame, made colourful (Nordland thumbnails are grey) so channel
    order matters."""
    grey = read_image(FRAME)
    return np.ascontiguousarray(np.dstack([grey[..., 0], grey[::-1, :, 1], grey[:, ::-1, 2]]))


def _decode(data: np.ndarray, rgb: np.ndarray, encoding: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    return raw_to_rgb(data.reshape(-1), h, w, encoding, data.shape[1],
                      is_bigendian=encoding.endswith("16"))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16"])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_round_trip_exactly(rgb, encoding, pad):
    assert np.array_equal(_decode(encode_raw(rgb, encoding, pad), rgb, encoding), rgb)


@pytest.mark.parametrize("encoding,max_error", [("mono8", 0), ("mono16", 0),
                                                ("bayer_rggb8", 40), ("yuv422", 12),
                                                ("yuv422_yuy2", 12)])
def test_grey_bayer_and_yuv_encodings(rgb, encoding, max_error):
    """Grey is replicated; Bayer and 4:2:2 are demosaiced / upsampled by OpenCV, close
    to the original (they lose resolution by design)."""
    out = _decode(encode_raw(rgb, encoding, 2), rgb, encoding)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    expected = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, 2) \
        if encoding.startswith("mono") else rgb
    assert np.abs(out.astype(int) - expected).mean() <= max_error + 1e-9
    if encoding == "bayer_rggb8":  # the pattern is not mirrored: red stays red
        flipped = rgb[..., ::-1]
        assert np.abs(out.astype(int) - rgb).mean() < np.abs(out.astype(int) - flipped).mean()


def test_every_bayer_pattern_is_supported():
    assert {e for e in RAW_ENCODINGS if e.startswith("bayer")} == {
        f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)}


@pytest.mark.parametrize("fields,message", [
    ((b"\0" * 32 * 4, 4, 8, "32FC1", 32), "'32FC1' is a depth, float or generic matrix image"),
    ((b"\0" * 16, 2, 4, "16UC1", 8), "'16UC1' is a depth"),
    ((b"\0" * 24, 2, 4, "8UC3", 12), "'8UC3' is a depth, float or generic"),
    ((b"\0" * 24, 2, 4, "rgb9", 12), "'rgb9' is not supported; supported: rgb8, "),
    ((b"\0" * 24, 2, 4, "", 12), "'' is not supported"),
    ((b"", 0, 0, "rgb8", 0), "rgb8 image is empty (0x0 pixels)"),
    ((b"", 5, 0, "mono8", 0), "mono8 image is empty (0x5 pixels)"),
    ((b"\0" * 96 * 32, 32, 33, "rgb8", 96), "step 96 is shorter than one row (99 bytes)"),
    ((b"\0" * 99 * 31, 32, 33, "rgb8", 99), "data has 3069 bytes, height x step is 3168 "
                                            "(truncated)"),
    ((b"\0" * 100, 3, 3, "rgb8", 9), "data has 100 bytes, height x step is 27"),
    ((b"\0" * 12, 2, 3, "yuv422", 6), "4:2:2 needs an even width"),
])
def test_malformed_images_are_refused_with_the_reason(fields, message):
    with pytest.raises(ImageEncodingError) as err:
        raw_to_rgb(*fields)
    assert message in str(err.value)
    assert "OpenCV" not in str(err.value)


def test_compressed_images(rgb):
    for ext, fmt, error in ((".png", "png", 0), (".jpg", "bgr8; jpeg compressed bgr8", 8)):
        ok, buf = cv2.imencode(ext, rgb[..., ::-1])
        out = compressed_to_rgb(buf.reshape(-1), fmt)
        assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() <= error
    with pytest.raises(ImageEncodingError, match="png CompressedImage is empty"):
        compressed_to_rgb(b"", "png")
    with pytest.raises(ImageEncodingError, match=r"cannot decode jpeg CompressedImage \(5 "
                                                 r"bytes\): damaged"):
        compressed_to_rgb(b"\xff\xd8abc", "jpeg")
    with pytest.raises(ImageEncodingError, match="'tiff' is not supported"):
        compressed_to_rgb(b"abc", "tiff")
    with pytest.raises(ImageEncodingError, match="is a depth image"):
        compressed_to_rgb(b"abc", "16UC1; compressedDepth png")
