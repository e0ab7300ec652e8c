"""Sequence windows over a traversal: length, stride and optional distance spacing.

A window is a row of frame indices. Without spacing it is ``length`` consecutive
frames; with ``spacing_m`` each next frame is the first one at least that far
(travelled distance along the route) from the previous, as the seeds do on
RobotCar, so a window covers the same ground whatever the vehicle's speed.
"""

from __future__ import annotations

import numpy as np


def make_windows(n_frames: int, length: int, stride: int = 1,
                 positions: np.ndarray | None = None, spacing_m: float = 0.0) -> np.ndarray:
    """int64 [W, length] frame indices, one window starting every ``stride`` frames.

    Windows that would run past the traversal's end are dropped. ``spacing_m`` > 0
    needs ``positions`` (float [N, 2], metres).
    """
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1, got {length}, {stride}")
    if spacing_m <= 0:
        starts = np.arange(0, n_frames - length + 1, stride, dtype=np.int64)
        return starts[:, None] + np.arange(length, dtype=np.int64)[None]
    if positions is None:
        raise ValueError("distance-spaced windows need frame positions (x, y)")
    step = np.linalg.norm(np.diff(positions[:, :2], axis=0), axis=1)
    travelled = np.concatenate([[0.0], np.cumsum(np.nan_to_num(step))])
    rows = []
    for start in range(0, n_frames, stride):
        row, last = [start], travelled[start]
        while len(row) < length:
            nxt = int(np.searchsorted(travelled, last + spacing_m, side="left"))
            nxt = max(nxt, row[-1] + 1)
            if nxt >= n_frames:
                break
            row.append(nxt)
            last = travelled[nxt]
        if len(row) < length:
            break
        rows.append(row)
    return np.asarray(rows, dtype=np.int64).reshape(-1, length)


def window_spans(windows: np.ndarray) -> np.ndarray:
    """(first, last) frame index of each window: int64 [W, 2], as the ground truth takes."""
    return np.stack([windows[:, 0], windows[:, -1]], axis=1)
