"""The map directory: ``manifest.json``, ``index.faiss``, ``keyframes.csv``.

Written atomically (temporary directory, then rename) and validated on load:
format version, file checksums, entry counts, descriptor size and the
fingerprint of the model that made the descriptors.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .keyframes import Keyframe, KeyframeTable

LOG = logging.getLogger(__name__)

FORMAT = "seqvpr-map"
VERSION = 1
MANIFEST, INDEX, KEYFRAMES = "manifest.json", "index.faiss", "keyframes.csv"
METRICS = ("ip", "l2")


class MapFormatError(ValueError):
    """A map directory is missing, damaged, or made by a different model."""


@dataclass(frozen=True)
class Match:
    """One search result. ``score``: higher is better (inner product, or -squared L2)."""

    rank: int
    keyframe_id: int
    score: float
    keyframe: Keyframe


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("FAISS is not installed: `pip install seqvpr[cpu]` (faiss-cpu) or "
                          "`seqvpr[gpu]` (faiss-gpu)") from None
    return faiss


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class PlaceMap:
    """Sequence descriptors in a FAISS index, one :class:`Keyframe` per entry."""

    def __init__(self, dim: int, metric: str = "ip", model: dict[str, Any] | None = None,
                 index_spec: str = "Flat", window: dict[str, int] | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        faiss = _faiss()
        self.dim, self.metric, self.index_spec = int(dim), metric, index_spec
        self.model = dict(model or {})
        self.window = dict(window or {})
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        self.index = faiss.index_factory(self.dim, index_spec, faiss_metric)
        self.keyframes = KeyframeTable()
        self.sources: list[str] = []

    def __len__(self) -> int:
        return self.index.ntotal

    def __repr__(self) -> str:
        return (f"PlaceMap({len(self)} entries, dim={self.dim}, metric={self.metric}, "
                f"index={self.index_spec}, model={self.model.get('name', '?')})")

    def add(self, descriptors: np.ndarray, keyframes: list[Keyframe]) -> None:
        """Append float32 [N, dim] descriptors with their keyframe rows."""
        xb = np.ascontiguousarray(descriptors, dtype=np.float32).reshape(-1, self.dim)
        if len(xb) != len(keyframes):
            raise ValueError(f"{len(xb)} descriptors but {len(keyframes)} keyframes")
        self.index.add(xb)
        for kf in keyframes:
            self.keyframes.append(kf)
            if kf.source and kf.source not in self.sources:
                self.sources.append(kf.source)

    def search(self, xq: np.ndarray, k: int, max_id: int | None = None):
        """Top-k of float32 [Q, dim] queries -> (D, I), each [Q, k]; I = -1 pads.

        ``max_id`` restricts the search to ids < max_id (slam mode's exclusion
        of the recent past), inside FAISS rather than by over-fetching.
        """
        faiss = _faiss()
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, self.dim)
        params = None
        if max_id is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorRange(0, max(0, max_id)))
        return self.index.search(xq, k, params=params)

    def matches(self, descriptor: np.ndarray, k: int, max_id: int | None = None) -> list[Match]:
        """Top-k matches of one descriptor as :class:`Match` objects, best first."""
        D, I = self.search(descriptor, k, max_id)
        sign = 1.0 if self.metric == "ip" else -1.0
        return [Match(rank, int(i), sign * float(d), self.keyframes[int(i)])
                for rank, (d, i) in enumerate(zip(D[0], I[0])) if i >= 0]

    def check_model(self, fingerprint: str, descriptor_dim: int) -> None:
        """Refuse a model that did not make this map's descriptors."""
        if descriptor_dim != self.dim:
            raise MapFormatError(f"map holds {self.dim}-d descriptors but the model makes "
                                 f"{descriptor_dim}-d ones")
        expected = self.model.get("fingerprint")
        if expected and expected != fingerprint:
            raise MapFormatError(
                f"map was built with model {self.model.get('name')} fingerprint "
                f"{expected[:12]}, the given model's is {fingerprint[:12]}; use the "
                "checkpoint the map was built with (--model)")

    # --- persistence -------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the map directory atomically; an existing map is replaced whole."""
        faiss = _faiss()
        target = Path(directory).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            faiss.write_index(self.index, str(tmp / INDEX))
            self.keyframes.save_csv(tmp / KEYFRAMES)
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "model": self.model,
                "descriptor_dim": self.dim,
                "metric": self.metric,
                "index": self.index_spec,
                "count": len(self),
                "window": self.window,
                "sources": self.sources,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "seqvpr_version": __version__,
                "files": {name: _sha256(tmp / name) for name in (INDEX, KEYFRAMES)},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            for name in (INDEX, KEYFRAMES, MANIFEST):
                with (tmp / name).open("rb") as f:
                    os.fsync(f.fileno())
            old = None
            if target.exists():
                old = target.parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        LOG.info("saved %r to %s", self, target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> PlaceMap:
        """Read and validate a map directory; any damage raises :class:`MapFormatError`."""
        faiss = _faiss()
        root = Path(directory)
        if not root.is_dir():
            raise MapFormatError(f"map directory {root} does not exist")
        manifest = _read_manifest(root)
        for name, digest in manifest["files"].items():
            path = root / name
            if not path.is_file():
                raise MapFormatError(f"{path} is missing")
            if _sha256(path) != digest:
                raise MapFormatError(f"{path} is damaged: its sha256 does not match "
                                     f"{MANIFEST}")
        m = cls.__new__(cls)
        m.dim, m.metric = int(manifest["descriptor_dim"]), manifest["metric"]
        m.index_spec, m.model = manifest["index"], manifest["model"]
        m.window, m.sources = manifest.get("window", {}), manifest.get("sources", [])
        try:
            m.index = faiss.read_index(str(root / INDEX))
            m.keyframes = KeyframeTable.load_csv(root / KEYFRAMES)
        except (RuntimeError, ValueError) as exc:
            raise MapFormatError(f"cannot read map {root}: {exc}") from exc
        counts = {"manifest": manifest["count"], INDEX: m.index.ntotal,
                  KEYFRAMES: len(m.keyframes)}
        if len(set(counts.values())) != 1 or m.index.d != m.dim:
            raise MapFormatError(f"map {root} is inconsistent: entry counts {counts}, "
                                 f"index dim {m.index.d} vs manifest {m.dim}")
        return m


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise MapFormatError(f"{path} is missing: {root} is not a seqvpr map")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MapFormatError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise MapFormatError(f"{path} is not a seqvpr map manifest")
    if manifest.get("version") != VERSION:
        raise MapFormatError(f"{path} has map format version {manifest.get('version')}; "
                             f"this seqvpr reads version {VERSION}")
    required = {"descriptor_dim", "metric", "index", "count", "model", "files"}
    missing = required - set(manifest)
    if missing:
        raise MapFormatError(f"{path} lacks fields {sorted(missing)}")
    return manifest
