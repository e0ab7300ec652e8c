"""JIST's image branch: CosPlace-style classes over the training frames.

Berton et al., "Rethinking Visual Geo-localization for Large-Scale
Applications" (CosPlace), CVPR 2022, and "JIST", RA-L 2023. Each frame gets a
class: its 10 m UTM cell (east, north) and its 30 degree heading bin (12 bins).
Classes are split into groups whose members are ``groups_n`` cells and
``groups_l`` heading bins apart, so no two classes of a group are adjacent
(neighbouring classes look alike and would fight each other). Each group has
its own CosFace classifier; training alternates between groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.pairs import TraversalPair
from .config import JistConfig


@dataclass
class ImageGroup:
    """Frames of one group: (pair index, side, frame index) and their class labels."""

    frames: list[tuple[int, str, int]]
    labels: np.ndarray  # int64 [n], 0..classes-1
    classes: int


def build_groups(pairs: list[TraversalPair], cfg: JistConfig) -> list[ImageGroup]:
    """Non-adjacent class groups over every frame with a position and a heading."""
    keys: dict[tuple[int, int, int], list[tuple[int, str, int]]] = {}
    for p_idx, pair in enumerate(pairs):
        for side, t in (("db", pair.db), ("query", pair.query)):
            if t.positions is None or t.headings is None:
                lacks = "positions" if t.positions is None else "headings"
                raise ValueError(f"JIST needs positions and headings; traversal {t.name} of "
                                 f"{pair.name} lacks {lacks}")
            cells = np.floor(t.positions[:, :2] / cfg.cell_m).astype(np.int64)
            bins = np.floor((t.headings % 360.0) / cfg.heading_deg).astype(np.int64)
            for i in range(len(t)):
                if np.isfinite(t.positions[i]).all() and np.isfinite(t.headings[i]):
                    keys.setdefault((int(cells[i, 0]), int(cells[i, 1]), int(bins[i])),
                                    []).append((p_idx, side, i))
    grouped: dict[tuple[int, int, int], list[list[tuple[int, str, int]]]] = {}
    for (e, n, h), frames in sorted(keys.items()):
        if len(frames) < cfg.min_images_per_class:
            continue
        gid = (e % cfg.groups_n, n % cfg.groups_n, h % cfg.groups_l)
        grouped.setdefault(gid, []).append(frames)
    groups = []
    for _, classes in sorted(grouped.items()):
        frames = [f for cls in classes for f in cls]
        labels = np.concatenate([np.full(len(c), k, dtype=np.int64) for k, c in enumerate(classes)])
        groups.append(ImageGroup(frames, labels, len(classes)))
    if not groups:
        raise ValueError("JIST: no class has enough images; lower jist.min_images_per_class")
    return groups
