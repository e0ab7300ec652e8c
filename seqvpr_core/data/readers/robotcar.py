"""Oxford RobotCar in the processed layout of the seq-VPR papers (SeqVLAD, JIST).

Layout::

    <root>/<split>/{database,queries}/<run>/@<utm_east>@<utm_north>@<...>@<frame>@...jpg

Each ``<run>`` folder is one traversal (a named recording, frames ~2 m apart);
the UTM position of every frame is in its file name, field 1 and 2 of the
``@``-separated name, and its frame number in field 4 (frames are ordered by
it). Each split pairs every database run with every query run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..pairs import SPLITS, TraversalPair, layout_error, register_dataset
from ..traversal import DEFAULT_PERIOD_NS, Traversal, image_files

EXPECTED = "<root>/<split>/{database,queries}/<run>/@east@north@...@frame@....jpg"


def read_run(folder: Path) -> Traversal:
    """One run folder: frames ordered by their frame number, UTM positions from names."""
    paths = image_files(folder)
    if not paths:
        raise layout_error(folder, "no images in the run folder", EXPECTED)
    rows = []
    for p in paths:
        fields = p.name.split("@")
        try:
            rows.append((int(fields[4]), float(fields[1]), float(fields[2]), p))
        except (IndexError, ValueError):
            raise layout_error(folder, f"image name {p.name!r} has no @east@north@..@frame@ "
                               "fields", EXPECTED) from None
    rows.sort(key=lambda r: r[0])
    positions = np.array([[r[1], r[2]] for r in rows])
    stamps = np.array([r[0] for r in rows], dtype=np.int64) * DEFAULT_PERIOD_NS
    return Traversal(folder.name, [r[3] for r in rows], stamps, positions,
                     travel_headings(positions))


def travel_headings(positions: np.ndarray) -> np.ndarray:
    """Direction of travel in degrees (0 = +north/y, 90 = +east/x), from the step to the
    next frame (the previous one for the last frame)."""
    if len(positions) < 2:
        return np.zeros(len(positions))
    step = np.diff(positions, axis=0)
    step = np.vstack([step, step[-1:]])
    return np.degrees(np.arctan2(step[:, 0], step[:, 1])) % 360.0


@register_dataset("robotcar")
def read_robotcar(root: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, list[TraversalPair]]:
    out: dict[str, list[TraversalPair]] = {}
    for split in splits:
        runs = {}
        for side in ("database", "queries"):
            folder = root / split / side
            if not folder.is_dir():
                raise layout_error(root, f"missing {split}/{side}/", EXPECTED)
            runs[side] = [read_run(d) for d in sorted(folder.iterdir()) if d.is_dir()]
            if not runs[side]:
                raise layout_error(root, f"no run folders in {split}/{side}/", EXPECTED)
        out[split] = [TraversalPair(f"robotcar {split}: {q.name} vs {d.name}", d, q)
                      for d in runs["database"] for q in runs["queries"]]
    return out
