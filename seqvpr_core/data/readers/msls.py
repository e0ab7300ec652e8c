"""Mapillary Street-Level Sequences (MSLS, Warburg et al., CVPR 2020) in its official layout.

Layout (the ``metadata.zip`` + ``images_vol_*.zip`` release, extracted in one folder)::

    <root>/train_val/<city>/{database,query}/images/<key>.jpg
    <root>/train_val/<city>/{database,query}/seq_info.csv      ,key,sequence_key,frame_number
    <root>/train_val/<city>/{database,query}/postprocessed.csv ,key,easting,northing,
                                                               unique_cluster,control_panel,
                                                               night,view_direction
    <root>/train_val/<city>/{database,query}/raw.csv           ,key,lon,lat,ca,captured_at,pano

Rows are joined on ``key``. Positions are the UTM ``easting``/``northing`` of
``postprocessed.csv``; the heading is the compass angle ``ca`` (degrees, 0 = north,
clockwise) of ``raw.csv``; stamps come from ``captured_at``. Panoramas (``pano``)
are dropped, as the MSLS and seq-VPR loaders do.

MSLS is thousands of short sequences per city, not one route: each city side is
ONE traversal (so one map per city) whose ``sequence_ids`` number its sequences.
A sequence is the frames of one ``sequence_key`` in ``frame_number`` order, cut
wherever a frame number is skipped (a dropped panorama or a gap in the release),
so windows, like the seq-VPR loaders' sequences, only ever hold consecutive frames.

Split protocols (``protocol`` option):

- ``seqvpr`` (SeqVLAD, Mereu et al., RA-L 2022; JIST, Berton et al., RA-L 2023;
  vandal-vpr/vg-transformers ``main_scripts/msls/2_reformat_testset_msls.py``):
  the test-city labels were never released, so the official validation cities
  Copenhagen + San Francisco (``cph``, ``sf``) are the test set, Amsterdam + Manila
  (statistics close to the test cities) the validation set, and the other 20
  official training cities the training set.
- ``melbourne`` (SeqNet, Garg & Milford, RA-L 2021; oravus/seqNet
  ``get_datasets.py``: ``msls_trainCity=melbourne``, ``msls_valCity=austin``):
  train on Melbourne alone and validate on Austin, the validation city also
  serving as the test set, as that code does.

``cities: {split: [city, ...]}`` replaces the protocol's city lists. Every city
of every split is checked for its files when the dataset is opened; its CSVs
are parsed when its split is first used.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ...inputs import read_text
from ..pairs import LazySplits, TraversalPair, layout_error, register_dataset
from ..traversal import Traversal

SIDES = ("database", "query")
FILES = {  # columns this reader uses, per file
    "seq_info.csv": ("key", "sequence_key", "frame_number"),
    "postprocessed.csv": ("key", "easting", "northing", "night"),
    "raw.csv": ("key", "ca", "captured_at", "pano"),
}
EXPECTED = ("<root>/train_val/<city>/{database,query}/ with images/<key>.jpg, seq_info.csv, "
            "postprocessed.csv and raw.csv (the official MSLS release)")
MSLS_TRAIN_CITIES = (
    "trondheim", "london", "boston", "melbourne", "amsterdam", "helsinki", "tokyo", "toronto",
    "saopaulo", "moscow", "zurich", "paris", "bangkok", "budapest", "austin", "berlin",
    "ottawa", "phoenix", "goa", "amman", "nairobi", "manila",
)
PROTOCOLS: dict[str, dict[str, list[str]]] = {
    "seqvpr": {
        "train": [c for c in MSLS_TRAIN_CITIES if c not in ("amsterdam", "manila")],
        "val": ["amsterdam", "manila"],
        "test": ["cph", "sf"],
    },
    "melbourne": {"train": ["melbourne"], "val": ["austin"], "test": ["austin"]},
}
QUERY_FILTERS = ("all", "day", "night")


def read_city_side(folder: Path, exclude_panos: bool = True, keep: str = "all") -> Traversal:
    """One ``<city>/<side>`` folder as a traversal of its sequences.

    Args:
        exclude_panos: drop panorama frames (``pano`` True in raw.csv).
        keep: ``all``, ``day`` or ``night`` frames (``night`` flag of postprocessed.csv).
    """
    if keep not in QUERY_FILTERS:
        raise ValueError(f"msls frame filter must be one of {QUERY_FILTERS}, got {keep!r}")
    seq = _read_csv(folder / "seq_info.csv")
    post = {r["key"]: r for r in _read_csv(folder / "postprocessed.csv")}
    raw = {r["key"]: r for r in _read_csv(folder / "raw.csv")}
    frames = []
    for order, row in enumerate(seq):
        key = row["key"]
        for name, table in (("postprocessed.csv", post), ("raw.csv", raw)):
            if key not in table:
                raise layout_error(folder, f"{name} has no row for key {key!r} of seq_info.csv",
                                   EXPECTED)
        p, r = post[key], raw[key]
        night = _flag(p["night"], folder / "postprocessed.csv", "night")
        if exclude_panos and _flag(r["pano"], folder / "raw.csv", "pano"):
            continue
        if (keep == "day" and night) or (keep == "night" and not night):
            continue
        where = folder / "seq_info.csv"
        frames.append((row["sequence_key"], _int(row["frame_number"], where, "frame_number"),
                       order, key, _float(p["easting"], folder / "postprocessed.csv", "easting"),
                       _float(p["northing"], folder / "postprocessed.csv", "northing"),
                       _float(r["ca"], folder / "raw.csv", "ca", allow_empty=True),
                       _stamp_ns(r["captured_at"], folder / "raw.csv")))
    name = f"{folder.parent.name}/{folder.name}"
    if not frames:
        raise ValueError(f"msls {name}: no frames left (panoramas excluded: {exclude_panos}, "
                         f"frames kept: {keep})")
    first_seen: dict[str, int] = {}
    for f in frames:
        first_seen.setdefault(f[0], f[2])
    # sequences in the order the release lists them, frames in frame_number order
    frames.sort(key=lambda f: (first_seen[f[0]], f[1]))
    ids = np.zeros(len(frames), dtype=np.int64)
    for i in range(1, len(frames)):
        same = frames[i][0] == frames[i - 1][0] and frames[i][1] == frames[i - 1][1] + 1
        ids[i] = ids[i - 1] + (0 if same else 1)
    images = folder / "images"
    paths = [images / f"{f[3]}.jpg" for f in frames]
    if not paths[0].is_file():
        raise layout_error(folder, f"image {paths[0]} of key {frames[0][3]!r} is missing",
                           EXPECTED)
    return Traversal(name, paths, np.array([f[7] for f in frames], dtype=np.int64),
                     np.array([[f[4], f[5]] for f in frames], dtype=np.float64),
                     np.array([f[6] for f in frames], dtype=np.float64), ids)


@register_dataset("msls")
def read_msls(root: Path, protocol: str = "seqvpr", cities: dict[str, list[str]] | None = None,
              exclude_panos: bool = True, queries: str = "all") -> LazySplits:
    """``{split: [one (database, query) pair per city]}`` under a seq-VPR protocol.

    Args:
        protocol: ``seqvpr`` or ``melbourne`` (see the module docstring).
        cities: ``{split: [city, ...]}`` instead of the protocol's lists.
        exclude_panos: drop panoramas, as the seq-VPR papers do.
        queries: ``all``, ``day`` or ``night`` query frames (e.g. ``night`` for the
            MSLS day-to-night subtask); the map keeps every frame.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown msls protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
    if queries not in QUERY_FILTERS:
        raise ValueError(f"msls queries must be one of {QUERY_FILTERS}, got {queries!r}")
    base = root / "train_val"
    if not base.is_dir():
        present = sorted(p.name for p in root.iterdir())
        raise layout_error(root, f"no train_val/ folder (found {present})", EXPECTED)
    plan = cities if cities is not None else PROTOCOLS[protocol]
    for split, names in plan.items():
        if not names:
            raise ValueError(f"msls split {split!r} lists no city")
        for city in names:
            _check_city(base, city)
    cache: dict[tuple[str, str], Traversal] = {}

    def side(city: str, name: str) -> Traversal:
        if (city, name) not in cache:
            keep = queries if name == "query" else "all"
            cache[city, name] = read_city_side(base / city / name, exclude_panos, keep)
        return cache[city, name]

    def loader(split: str, names: list[str]):
        return lambda: [TraversalPair(f"msls {split}: {city}", side(city, "database"),
                                      side(city, "query")) for city in names]

    return LazySplits({split: loader(split, list(names)) for split, names in plan.items()})


def _check_city(base: Path, city: str) -> None:
    """Every file the reader needs, checked before any CSV is parsed."""
    if not (base / city).is_dir():
        present = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise layout_error(base.parent, f"no city folder train_val/{city}/ (found {present})",
                           EXPECTED)
    for name in SIDES:
        folder = base / city / name
        for needed in ("images", *FILES):
            if not (folder / needed).exists():
                raise layout_error(base.parent, f"missing train_val/{city}/{name}/{needed}",
                                   EXPECTED)


def _read_csv(path: Path) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(read_text(path, "MSLS table"), newline=""))
    try:
        missing = [c for c in FILES[path.name] if c not in (reader.fieldnames or [])]
        if missing:
            raise layout_error(path.parent, f"{path.name} lacks column(s) {missing} (has "
                               f"{reader.fieldnames})", EXPECTED)
        return list(reader)
    except csv.Error as exc:
        raise ValueError(f"{path}:{reader.line_num}: not a readable CSV row ({exc})") from None


def _flag(value: str, path: Path, column: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise ValueError(f"{path}: column {column!r} holds {value!r}, expected True or False")


def _float(value: str, path: Path, column: str, allow_empty: bool = False) -> float:
    if allow_empty and not value.strip():
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}: column {column!r} holds {value!r}, not a number") from None


def _int(value: str, path: Path, column: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"{path}: column {column!r} holds {value!r}, not an integer") from None


def _stamp_ns(value: str, path: Path) -> int:
    """``captured_at`` as Unix ns: epoch seconds/ms/us/ns, or a date-time written with
    any separators (``2016-06-24_08-49-55``, ``2016-06-24 08:49:55``, ``20160624_084955``)."""
    v = value.strip()
    digits = re.sub(r"\D", "", v)
    if not re.fullmatch(r"\d+(\.\d*)?", v) or len(v) in (8, 14):  # a written date-time
        try:
            when = datetime.strptime(digits[:14], "%Y%m%d%H%M%S") if len(digits) >= 14 \
                else datetime.strptime(digits, "%Y%m%d")
        except ValueError:
            raise ValueError(f"{path}: captured_at {value!r} is neither a Unix time nor a "
                             "date-time") from None
        return int(when.replace(tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    x = float(v)
    for scale, limit in ((1, 1e17), (1_000, 1e14), (1_000_000, 1e11)):
        if x >= limit:  # ns, us, ms
            return round(x * scale)
    return round(x * 1e9)
