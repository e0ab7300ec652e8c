"""Evaluate a model by running both traversals through the streaming localizer.

The database traversal is streamed in ``mapping`` mode, the query traversal in
``localize`` mode: the same code a robot runs. Frames are encoded once per
traversal and the cached features are reused for the single-frame baseline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from ..data import Traversal
from ..maps import PlaceMap
from ..models import SequenceModel
from ..stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig, WindowResult
from .ground_truth import GroundTruth, window_positives
from .recall import RECALL_VALUES, recall_at_k


@dataclass
class EvalResult:
    model: str
    window: WindowConfig
    recall: dict[int, float]
    n_db_windows: int
    n_queries: int
    ranked_ids: np.ndarray  # int64 [Q, k]
    positives: list[np.ndarray]
    query_windows: np.ndarray  # int [Q, 2] first/last frame index
    db_windows: np.ndarray
    timing_ms: dict[str, float] = field(default_factory=dict)


def encode_traversal(model: SequenceModel, traversal: Traversal, batch_size: int = 32,
                     progress: bool = True) -> tuple[torch.Tensor, list[FrameInfo], float]:
    """Encode every frame once: (features [N, D], frame infos, ms per frame)."""
    feats, elapsed = [], 0.0
    bar = tqdm(total=len(traversal), desc=f"encode {traversal.name}", unit="frame",
               disable=not progress, leave=False)
    for _, frames in traversal.batches(batch_size):
        t0 = time.perf_counter()
        feats.append(model.encode_frames(frames))
        elapsed += time.perf_counter() - t0
        bar.update(len(frames))
    bar.close()
    infos = [FrameInfo(i, int(traversal.stamps_ns[i]), traversal.paths[i].name,
                       traversal.pose(i), traversal.name) for i in range(len(traversal))]
    return torch.cat(feats), infos, 1000.0 * elapsed / len(traversal)


def evaluate(model: SequenceModel, db: tuple[torch.Tensor, list[FrameInfo]],
             query: tuple[torch.Tensor, list[FrameInfo]], window: WindowConfig,
             gt: GroundTruth, ks: Sequence[int] = RECALL_VALUES,
             db_positions: np.ndarray | None = None,
             query_positions: np.ndarray | None = None) -> EvalResult:
    """Recall@K of ``model`` on pre-encoded (features, infos) of both traversals."""
    place_map = PlaceMap(model.descriptor_dim, model={"name": model.name,
                                                      "fingerprint": model.fingerprint()})
    t0 = time.perf_counter()
    mapper = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    db_results = mapper.push_features(*db)
    t1 = time.perf_counter()
    localizer = StreamingLocalizer(model, place_map,
                                   LocalizerConfig("localize", window, top_k=max(ks)))
    results = localizer.push_features(*query)
    t2 = time.perf_counter()
    if not results or not db_results:
        raise ValueError(f"window of {window.min_len} frames is longer than a traversal "
                         f"({len(db[1])} map / {len(query[1])} query frames)")
    ranked, q_windows = ranked_ids(results, max(ks)), frame_spans(results)
    db_windows = frame_spans(db_results)
    positives = window_positives(q_windows, db_windows, len(db[1]), gt,
                                 query_positions, db_positions)
    return EvalResult(
        model=model.name, window=window, recall=recall_at_k(ranked, positives, ks),
        n_db_windows=len(db_results), n_queries=len(results), ranked_ids=ranked,
        positives=positives, query_windows=q_windows, db_windows=db_windows,
        timing_ms={"map_ms_per_window": 1000 * (t1 - t0) / len(db_results),
                   "localize_ms_per_window": 1000 * (t2 - t1) / len(results)},
    )


def ranked_ids(results: Sequence[WindowResult], k: int) -> np.ndarray:
    """Map ids of each window's matches, best first: int64 [Q, k], -1 padded."""
    ranked = np.full((len(results), k), -1, dtype=np.int64)
    for q, r in enumerate(results):
        ids = [m.keyframe_id for m in r.matches[:k]]
        ranked[q, :len(ids)] = ids
    return ranked


def frame_spans(results: Sequence[WindowResult]) -> np.ndarray:
    """(first, last) frame index of each window: int64 [W, 2]."""
    return np.array([[r.frames[0].index, r.last.index] for r in results], dtype=np.int64)


def evaluate_traversals(model: SequenceModel, db: Traversal, query: Traversal,
                        window: WindowConfig, gt: GroundTruth, single_frame: bool = True,
                        ks: Sequence[int] = RECALL_VALUES, batch_size: int = 32,
                        progress: bool = True) -> dict:
    """The report of ``seqvpr eval``: sequence recall, and single-frame recall of
    the same encoder on the same cached features as the reference."""
    db_enc, q_enc = (encode_traversal(model, t, batch_size, progress) for t in (db, query))
    runs = {"sequence": (model, window)}
    if single_frame:
        runs["single_frame"] = (model.with_aggregator("none"), WindowConfig.fixed(1))
    report: dict = {
        "model": model.name,
        "model_config": model.config,
        "descriptor_dim": model.descriptor_dim,
        "window": {"min_len": window.min_len, "max_len": window.max_len,
                   "stride": window.stride},
        "ground_truth": gt.describe(),
        "db": {"name": db.name, "frames": len(db)},
        "query": {"name": query.name, "frames": len(query)},
        "timing_ms": {"encode_per_frame": (db_enc[2] * len(db) + q_enc[2] * len(query))
                      / (len(db) + len(query))},
    }
    for key, (m, w) in runs.items():
        r = evaluate(m, db_enc[:2], q_enc[:2], w, gt, ks, db.positions, query.positions)
        prefix = "" if key == "sequence" else "single_frame_"
        report[f"{prefix}recall"] = {str(k): v for k, v in r.recall.items()}
        report[f"{prefix}queries"] = r.n_queries
        report["timing_ms"].update({f"{prefix}{k}": v for k, v in r.timing_ms.items()})
    return report
