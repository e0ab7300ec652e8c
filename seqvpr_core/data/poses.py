"""Poses at frame stamps, interpolated from an odometry / pose stream."""

from __future__ import annotations

import math

import numpy as np

Pose = tuple[float, float, float]  # x (m), y (m), heading (degrees); nan when unknown


def yaw_degrees(qx: float, qy: float, qz: float, qw: float) -> float:
    """Heading (rotation about z) of a quaternion, in degrees."""
    return math.degrees(math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz)))


def interpolate_poses(stamps_ns: np.ndarray, xy: np.ndarray, heading_deg: np.ndarray,
                      query_ns: np.ndarray, max_gap_s: float = 1.0) -> list[Pose | None]:
    """Linear interpolation of x, y and (unwrapped) heading at ``query_ns``.

    Args:
        stamps_ns: int64 [N] pose stamps, any order.
        xy: float [N, 2] positions; heading_deg: float [N].
        query_ns: int64 [Q] frame stamps.
        max_gap_s: no pose (None) for a frame outside the pose stream or between
            two poses further apart than this: a guessed pose would corrupt maps.
    """
    if len(stamps_ns) == 0:
        return [None] * len(query_ns)
    order = np.argsort(stamps_ns, kind="stable")
    t = np.asarray(stamps_ns, dtype=np.int64)[order]
    xy = np.asarray(xy, dtype=np.float64)[order]
    heading = np.unwrap(np.radians(np.asarray(heading_deg, dtype=np.float64)[order]))
    out: list[Pose | None] = []
    max_gap_ns = max_gap_s * 1e9
    for q in np.asarray(query_ns, dtype=np.int64):
        j = int(np.searchsorted(t, q, side="left"))
        if j < len(t) and t[j] == q:
            lo = hi = j
        elif 0 < j < len(t) and t[j] - t[j - 1] <= max_gap_ns:
            lo, hi = j - 1, j
        else:
            out.append(None)
            continue
        w = 0.0 if hi == lo else (q - t[lo]) / (t[hi] - t[lo])
        x, y = (1 - w) * xy[lo] + w * xy[hi]
        h = math.degrees((1 - w) * heading[lo] + w * heading[hi])
        out.append((float(x), float(y), (h + 180.0) % 360.0 - 180.0))
    return out
