"""Nordland: one folder per season, frames aligned by file name across seasons.

Layout (as in ``../shared/data/nordland64`` and the partitioned releases)::

    <root>/<season>/images-NNNNN.png      season in spring, summer, fall, winter

``images-K`` of every season shows the same place, so ground truth is a frame
tolerance, not a radius. The seq-VPR papers train on summer (map) vs winter
(queries) and test on other frames or seasons; splits here are frame ranges
over the aligned sequence, so train, validation and test places never overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..pairs import TraversalPair, layout_error, register_dataset
from ..traversal import DEFAULT_PERIOD_NS, Traversal, image_files

SEASONS = ("spring", "summer", "fall", "winter")


def read_season(root: Path, season: str) -> Traversal:
    """All frames of one season folder, sorted by name (= by route position)."""
    folder = root / season
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise layout_error(root, f"no season folder {season!r} (found {present})",
                           "<root>/<season>/images-NNNNN.png with season in "
                           f"{', '.join(SEASONS)}")
    paths = image_files(folder)
    if not paths:
        raise layout_error(root, f"no images in {folder}", "images-NNNNN.png files")
    return Traversal(season, paths, np.arange(len(paths), dtype=np.int64) * DEFAULT_PERIOD_NS)


@register_dataset("nordland")
def read_nordland(root: Path, db: str = "summer", query: str = "winter",
                  splits: dict[str, list[int]] | None = None,
                  test_db: str | None = None, test_query: str | None = None,
                  seasons: dict[str, list[str]] | None = None
                  ) -> dict[str, list[TraversalPair]]:
    """Frame-aligned (db, query) seasons cut into split frame ranges.

    Args:
        splits: ``{split: [first, stop)}`` frame ranges (0-based, stop exclusive);
            default: the whole sequence as ``test``.
        test_db, test_query: seasons of the test split when they differ from the
            training seasons (the papers test on spring vs fall).
        seasons: ``{split: [db, query]}`` seasons of any split that differ from
            ``db``/``query`` (e.g. a held-out stretch with the roles swapped).
    """
    db_t, q_t = read_season(root, db), read_season(root, query)
    if [p.name for p in db_t.paths] != [p.name for p in q_t.paths]:
        raise layout_error(root, f"seasons {db!r} and {query!r} hold different frame names",
                           "the same images-NNNNN.png names in every season (frame alignment)")
    out: dict[str, list[TraversalPair]] = {}
    unknown = sorted(set(seasons or {}) - set(splits or {"test": None}))
    if unknown:
        raise ValueError(f"nordland seasons for splits {unknown} that are not in splits")
    for split, pair in (seasons or {}).items():
        if len(pair) != 2:
            raise ValueError(f"nordland seasons.{split} must be [db, query], got {pair!r}")
    for split, (start, stop) in (splits or {"test": [0, len(db_t)]}).items():
        if not 0 <= start < stop <= len(db_t):
            raise ValueError(f"nordland split {split!r} frames [{start}, {stop}) outside the "
                             f"{len(db_t)} frames of {root}")
        a, b = db_t, q_t
        if split == "test" and (test_db or test_query):
            a, b = read_season(root, test_db or db), read_season(root, test_query or query)
        if split in (seasons or {}):
            a, b = (read_season(root, s) for s in seasons[split])
        pa, pb = a.subset(start, stop), b.subset(start, stop)
        pa.name, pb.name = f"{a.name}[{start}:{stop}]", f"{b.name}[{start}:{stop}]"
        out[split] = [TraversalPair(f"nordland {split}", pa, pb)]
    return out
