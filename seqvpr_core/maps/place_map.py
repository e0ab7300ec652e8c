"""The map directory: ``manifest.json``, ``index.faiss``, ``keyframes.csv`` and
``model.pt``, the checkpoint of the model that made the descriptors, so that a map
is all a robot needs (maps written before they carried it rebuild the model from
the config in the manifest, with the defaults of their day pinned, which the
fingerprint check accepts when it has no trained weights).

Written atomically (temporary directory, then rename; a save killed at any
instant leaves a map the next load finds, see :mod:`seqvpr_core.atomic`) and
validated on load: the manifest's fields (:mod:`.manifest`), file checksums,
entry counts, descriptor size, the index's metric and the fingerprint of the
model that made the descriptors. ``save`` replaces only a map (or an empty
directory): never a folder of someone's files (:mod:`seqvpr_core.outputs`).

Indexes that need training (IVF, PQ, PCA; see :mod:`.indexes`) are trained on
the map's own descriptors. Until a map has enough entries for that, they sit
in an exact flat "staging" index (exact search, so small and young maps lose
nothing). Training happens on ``save()`` once there are enough entries, or in
``add()`` when the staging index holds 4x that many (a slam map growing
online); entries added after training are encoded with the trained index
(no retraining: PQ codes cannot be decoded back into exact descriptors).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_directory, recover_directory
from ..catalog import METRICS
from ..inputs import InputError, directory, regular_file
from ..outputs import MAP, claim
from . import indexes
from .keyframes import Keyframe, KeyframeTable
from .manifest import (
    FORMAT,
    INDEX,
    KEYFRAMES,
    MANIFEST,
    MODEL,
    VERSION,
    MapFormatError,
    pin_earlier_defaults,
    read_manifest,
)

LOG = logging.getLogger(__name__)
__all__ = ["MANIFEST", "MODEL", "MapFormatError", "Match", "PlaceMap"]


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
        raise ImportError("FAISS is not installed (seqvpr depends on faiss-cpu): "
                          "`pip install faiss-cpu`, or faiss-gpu-cu12 for GPU search") from None
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
        try:
            self.index = faiss.index_factory(self.dim, index_spec, self._faiss_metric())
        except RuntimeError as exc:
            raise ValueError(f"FAISS cannot build index {index_spec!r} for {self.dim}-d "
                             f"descriptors: {exc}") from None
        indexes.tune(self.index)
        self._staging = None if self.index.is_trained else faiss.IndexFlat(
            self.dim, self._faiss_metric())
        self._gpu: Any = None  # GPU copy of the searched index, made on first search
        self.keyframes = KeyframeTable()
        self.sources: list[str] = []
        # what save() writes as MODEL: the SequenceModel of for_model(), or a loaded
        # map's own checkpoint file with its sha256
        self._model_source: Any = None
        self._model_sha: str | None = None

    def _faiss_metric(self) -> int:
        faiss = _faiss()
        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2

    @property
    def searched_index(self) -> Any:
        """The index searches run on: the staging flat index until training."""
        return self.index if self._staging is None else self._staging

    @property
    def trained(self) -> bool:
        return self._staging is None

    @classmethod
    def for_model(cls, model, window=None, spec: str | None = None, metric: str | None = None,
                  index_spec: str = "Flat") -> PlaceMap:
        """An empty map whose manifest records the model (name, config, fingerprint)
        and window (a ``WindowConfig``) that will fill it, so loading can check them.
        ``metric``: by default the one the model's descriptors need (``model.metric``)."""
        record = {"name": model.name, "config": model.config,
                  "fingerprint": model.fingerprint()}
        if spec is not None:
            record["spec"] = str(spec)
        win = None if window is None else {"min_len": window.min_len,
                                           "max_len": window.max_len, "stride": window.stride}
        place_map = cls(model.descriptor_dim, metric or model.metric, record,
                        index_spec=index_spec, window=win)
        place_map._model_source = model
        return place_map

    @property
    def model_file(self) -> Path | None:
        """The checkpoint a loaded map carries (checked against the manifest), if any."""
        return self._model_source if isinstance(self._model_source, Path) else None

    def model_spec(self) -> Path | dict | None:
        """What rebuilds this map's model (for ``build_model``): its checkpoint, or for
        maps written before they carried one the recorded config."""
        return self.model_file or self.model.get("config")

    def __len__(self) -> int:
        return self.searched_index.ntotal

    def __repr__(self) -> str:
        state = "" if self.trained else ", untrained: exact search"
        return (f"PlaceMap({len(self)} entries, dim={self.dim}, metric={self.metric}, "
                f"index={self.index_spec}{state}, model={self.model.get('name', '?')})")

    def add(self, descriptors: np.ndarray, keyframes: list[Keyframe]) -> None:
        """Append float32 [N, dim] descriptors with their keyframe rows."""
        xb = np.ascontiguousarray(descriptors, dtype=np.float32).reshape(-1, self.dim)
        if len(xb) != len(keyframes):
            raise ValueError(f"{len(xb)} descriptors but {len(keyframes)} keyframes")
        self.searched_index.add(xb)
        if self._gpu:  # None: not made yet; False: no GPU
            self._gpu.add(xb)
        if self._staging is not None and len(self) >= 4 * indexes.train_size(self.index):
            self.train()
        for kf in keyframes:
            self.keyframes.append(kf)
            if kf.source and kf.source not in self.sources:
                self.sources.append(kf.source)

    def search(self, xq: np.ndarray, k: int, max_id: int | None = None):
        """Top-k of float32 [Q, dim] queries -> (D, I), each [Q, k]; I = -1 pads.

        ``max_id`` restricts the search to ids < max_id (slam mode's exclusion
        of the recent past), inside FAISS rather than by over-fetching.
        """
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, self.dim)
        if max_id is not None and max_id < len(self):
            index = self.searched_index  # ID selectors are a CPU feature
            return index.search(xq, k, params=indexes.search_params(index, max_id))
        if self._gpu is None:
            self._gpu = indexes.to_gpu(self.searched_index) or False
        return (self._gpu or self.searched_index).search(xq, k)

    def train(self) -> None:
        """Train the index on the map's own entries and move them in.

        Trains on a random sample when the map is much larger than training needs.
        """
        if self._staging is None:
            return
        n, need = len(self), indexes.train_size(self.index)
        if n < need:
            raise ValueError(f"index {self.index_spec!r} needs at least {need} entries to "
                             f"train; the map has {n}; use a flat or hnsw index for small maps")
        xb = self._staging.reconstruct_n(0, n)
        cap = indexes.training_cap(self.index)
        sample = xb if n <= cap else xb[np.sort(np.random.default_rng(0).choice(n, cap, False))]
        LOG.info("training %s on %d of %d map entries", self.index_spec, len(sample), n)
        self.index.train(sample)
        indexes.drop_training_state(self.index)
        self.index.add(xb)
        self._staging, self._gpu = None, None
        imbalance = indexes.list_imbalance(self.index)
        if imbalance is not None and imbalance > indexes.IMBALANCE_WARN:
            LOG.warning("inverted lists of %s are %.1fx uneven: searches scan a few huge "
                        "lists and run slower than they should; centre the descriptors "
                        "with PCA in front (build-map --pca DIM; --index auto does at city "
                        "scale) or use an hnsw index",
                        self.index_spec, imbalance)

    def matches(self, descriptor: np.ndarray, k: int, max_id: int | None = None) -> list[Match]:
        """Top-k matches of one descriptor as :class:`Match` objects, best first."""
        D, I = self.search(descriptor, k, max_id)
        sign = 1.0 if self.metric == "ip" else -1.0
        return [Match(rank, int(i), sign * float(d), self.keyframes[int(i)])
                for rank, (d, i) in enumerate(zip(D[0], I[0], strict=True)) if i >= 0]

    def check_model(self, fingerprint: str, descriptor_dim: int) -> None:
        """Refuse a model that did not make this map's descriptors."""
        if descriptor_dim != self.dim:
            raise MapFormatError(f"map holds {self.dim}-d descriptors but the model makes "
                                 f"{descriptor_dim}-d ones")
        expected = self.model.get("fingerprint")
        if expected and expected != fingerprint:
            fix = (f"leave the model out to use the one the map carries ({self.model_file})"
                   if self.model_file else "use the checkpoint the map was built with "
                                           "(--model)")
            raise MapFormatError(
                f"map was built with model {self.model.get('name')} fingerprint "
                f"{expected[:12]}, the given model's is {fingerprint[:12]}; {fix}")

    # --- persistence -------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the map directory atomically; an existing map is replaced whole.

        Refuses (:class:`~seqvpr_core.outputs.OutputError`) a directory that is not a
        map or empty, and a file: nothing but a map is ever replaced."""
        faiss = _faiss()
        target = claim(directory, MAP)  # refused before the (possibly long) training
        if not self.trained and len(self) >= indexes.train_size(self.index):
            self.train()
        with atomic_directory(target, MAP) as tmp:
            try:
                faiss.write_index(self.searched_index, str(tmp / INDEX))
            except RuntimeError as exc:  # how FAISS reports a failed fwrite (a full disk)
                raise OSError(f"FAISS could not write {INDEX}: "
                              f"{str(exc).strip().splitlines()[-1]}") from exc
            self.keyframes.save_csv(tmp / KEYFRAMES)
            files = [INDEX, KEYFRAMES, *self._write_model(tmp)]
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "model": {**self.model, "file": MODEL} if MODEL in files else self.model,
                "descriptor_dim": self.dim,
                "metric": self.metric,
                "index": self.index_spec,
                "trained": self.trained,  # False: index.faiss is the flat staging index
                "count": len(self),
                "window": self.window,
                "sources": self.sources,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "seqvpr_version": __version__,
                "files": {name: _sha256(tmp / name) for name in files},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        LOG.info("saved %r to %s", self, target)
        return target

    def _write_model(self, directory: Path) -> list[str]:
        """Write the model that made the descriptors as ``directory/MODEL``: [MODEL],
        or [] for a map that has none (loaded from an older map, or bare descriptors)."""
        source, path = self._model_source, directory / MODEL
        if source is None:
            return []
        if isinstance(source, Path):  # a loaded map's own checkpoint, verified on load
            shutil.copyfile(source, path)
            if _sha256(path) != self._model_sha:
                raise MapFormatError(f"{source} changed since its map was loaded")
        elif source.fingerprint() != self.model.get("fingerprint"):
            raise MapFormatError(f"model {self.model.get('name')} changed (new weights) "
                                 "since it made this map's descriptors; rebuild the map")
        else:
            source.save(path)
        return [MODEL]

    @classmethod
    def load(cls, directory: str | os.PathLike) -> PlaceMap:
        """Read and validate a map directory; any damage raises :class:`MapFormatError`.

        A map whose save was killed between its two renames is found where the save
        left it and put back (:func:`~seqvpr_core.atomic.recover_directory`)."""
        root = Path(directory)
        if not os.path.lexists(root):
            recovered = recover_directory(root, cls._read)
            if recovered is None:
                raise MapFormatError(f"map directory {root} does not exist")
            return recovered
        return cls._read(root)

    @classmethod
    def _read(cls, root: Path) -> PlaceMap:
        faiss = _faiss()
        try:
            directory(root, "map directory")
            manifest = read_manifest(root)
            for name, digest in manifest["files"].items():
                path = root / name
                if not os.path.lexists(path):
                    raise MapFormatError(f"{path} is missing")
                if _sha256(regular_file(path, "map file")) != digest:
                    raise MapFormatError(f"{path} is damaged: its sha256 does not match "
                                         f"{MANIFEST}")
        except (InputError, OSError) as exc:
            raise MapFormatError(str(exc)) from None
        m = cls.__new__(cls)
        m.dim, m.metric = manifest["descriptor_dim"], manifest["metric"]
        m.index_spec, m.model = manifest["index"], manifest["model"]
        m.window, m.sources = manifest.get("window", {}), manifest.get("sources", [])
        m._gpu = None
        m._model_sha = manifest["files"].get(MODEL)
        m._model_source = root / MODEL if m._model_sha else None
        if m._model_source is None:
            m.model = pin_earlier_defaults(m.model)
        try:
            stored = faiss.read_index(str(root / INDEX))
            m.keyframes = KeyframeTable.load_csv(root / KEYFRAMES)
            if manifest.get("trained", True):
                m.index, m._staging = stored, None
            else:
                m.index = faiss.index_factory(m.dim, m.index_spec, m._faiss_metric())
                indexes.tune(m.index)
                m._staging = stored
        except (RuntimeError, ValueError, OSError, csv.Error) as exc:
            raise MapFormatError(f"cannot read map {root}: {exc}") from exc
        counts = {"manifest": manifest["count"], INDEX: stored.ntotal,
                  KEYFRAMES: len(m.keyframes)}
        if len(set(counts.values())) != 1 or stored.d != m.dim:
            raise MapFormatError(f"map {root} is inconsistent: entry counts {counts}, "
                                 f"index dim {stored.d} vs manifest {m.dim}")
        if stored.metric_type != m._faiss_metric():
            actual = "inner product" if stored.metric_type == faiss.METRIC_INNER_PRODUCT \
                else "L2" if stored.metric_type == faiss.METRIC_L2 else str(stored.metric_type)
            raise MapFormatError(f"{root / MANIFEST} says metric {m.metric!r} but "
                                 f"{INDEX} searches by {actual}: scores would come out with "
                                 "the wrong sign; the manifest was edited or mixed up")
        return m
