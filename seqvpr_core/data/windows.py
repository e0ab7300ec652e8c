"""Sequence windows over a traversal: length, stride and optional distance spacing.

A window is a row of frame indices. Without spacing it is ``length`` consecutive
frames; with ``spacing_m`` each next frame is the first one at least that far
(travelled distance along the route) from the previous, as the seeds do on
RobotCar, so a window covers the same ground whatever the vehicle's speed.
With ``sequence_ids`` (MSLS sequences, nuScenes scenes) windows are cut in every
sequence separately and never span two.
"""

from __future__ import annotations

import numpy as np


def sequence_bounds(n_frames: int, sequence_ids: np.ndarray | None = None) -> np.ndarray:
    """int64 [S, 2] (start, stop) frame ranges of the sequences; one range without ids."""
    if sequence_ids is not None and len(sequence_ids) != n_frames:
        raise ValueError(f"{len(sequence_ids)} sequence ids for {n_frames} frames")
    if n_frames == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if sequence_ids is None:
        return np.array([[0, n_frames]], dtype=np.int64)
    ids = np.asarray(sequence_ids)
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    return np.stack([np.concatenate([[0], cuts]), np.concatenate([cuts, [n_frames]])],
                    axis=1).astype(np.int64)


def make_windows(n_frames: int, length: int, stride: int = 1,
                 positions: np.ndarray | None = None, spacing_m: float = 0.0,
                 sequence_ids: np.ndarray | None = None) -> np.ndarray:
    """int64 [W, length] frame indices, one window starting every ``stride`` frames.

    Windows that would run past the traversal's (or their sequence's) end are
    dropped. ``spacing_m`` > 0 needs ``positions`` (float [N, 2], metres).
    ``sequence_ids`` (int [N]): windows restart at every sequence and never span two.
    """
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1, got {length}, {stride}")
    if sequence_ids is not None:
        parts = [start + make_windows(int(stop - start), length, stride,
                                      None if positions is None else positions[start:stop],
                                      spacing_m)
                 for start, stop in sequence_bounds(n_frames, sequence_ids)]
        return np.concatenate(parts or [np.zeros((0, length), dtype=np.int64)]).astype(np.int64)
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
