"""A user's own recordings: a folder per traversal with images and a CSV of poses.

Layout::

    <root>/<traversal>/*.png|jpg
    <root>/<traversal>/poses.csv     name,stamp,x,y[,heading]  (s, m, m, degrees)

Which traversal is the map and which the query, per split, comes from the
config: ``pairs: {train: [[db, query], ...], val: ..., test: ...}``.
"""

from __future__ import annotations

from pathlib import Path

from ..pairs import TraversalPair, layout_error, register_dataset
from ..traversal import POSES_FILE, read_image_folder


@register_dataset("folder_csv")
def read_folder_csv(root: Path, pairs: dict[str, list[list[str]]]
                    ) -> dict[str, list[TraversalPair]]:
    """Each named folder is read with its ``poses.csv`` (required: positions give the
    ground truth)."""
    cache = {}
    out: dict[str, list[TraversalPair]] = {}
    for split, names in pairs.items():
        out[split] = []
        for db, query in names:
            for name in (db, query):
                if name not in cache:
                    folder = root / name
                    if not (folder / POSES_FILE).is_file():
                        raise layout_error(root, f"{folder} has no {POSES_FILE}",
                                           f"<root>/<traversal>/{POSES_FILE} with columns "
                                           "name,stamp,x,y[,heading]")
                    cache[name] = read_image_folder(folder)
            out[split].append(TraversalPair(f"{db}->{query}", cache[db], cache[query]))
    return out
