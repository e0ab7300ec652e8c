"""Evaluate a model by running both traversals through the streaming localizer.

The database traversal is streamed in ``mapping`` mode, the query traversal in
``localize`` mode: the same code a robot runs. Frames are encoded once per
traversal and the cached features are reused for the single-frame baseline.
A traversal made of many short sequences (MSLS, nuScenes) is streamed one
sequence at a time, the localizer reset in between, into one map: no window
spans two sequences, and map ids still index frame spans of the one traversal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from ..data import Traversal
from ..data.windows import sequence_bounds
from ..maps import PlaceMap
from ..models import SequenceModel
from ..stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig, WindowResult
from .ground_truth import RULES, GroundTruth, window_positives
from .recall import RECALL_VALUES, recall_at_k


@dataclass
class EvalResult:
    """One evaluated run. Recall and positives exist under every ground-truth rule
    (:data:`RULES`); ``recall`` and ``positives`` are those of ``gt.rule``."""

    model: str
    window: WindowConfig
    gt: GroundTruth
    recalls: dict[str, dict[int, float]]  # rule -> {K: Recall@K}
    n_db_windows: int
    n_queries: int
    ranked_ids: np.ndarray  # int64 [Q, k]
    positives_by_rule: dict[str, list[np.ndarray]]
    query_windows: np.ndarray  # int [Q, 2] first/last frame index
    db_windows: np.ndarray
    timing_ms: dict[str, float] = field(default_factory=dict)
    top_scores: np.ndarray | None = None  # float [Q, k] match scores, best first
    query_descriptors: np.ndarray | None = None  # float32 [Q, D]
    place_map: PlaceMap | None = None  # the map built from the database windows

    @property
    def recall(self) -> dict[int, float]:
        return self.recalls[self.gt.rule]

    @property
    def positives(self) -> list[np.ndarray]:
        return self.positives_by_rule[self.gt.rule]


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
             query_positions: np.ndarray | None = None,
             query_window: WindowConfig | None = None, *,
             db_headings: np.ndarray | None = None, query_headings: np.ndarray | None = None,
             db_sequences: np.ndarray | None = None,
             query_sequences: np.ndarray | None = None) -> EvalResult:
    """Recall@K of ``model`` on pre-encoded (features, infos) of both traversals,
    under every ground-truth rule (``gt`` gives the criterion and the main rule).

    ``query_window`` (default ``window``) windows the queries differently from the
    map, e.g. one window per block for the reversed-order test. ``*_headings``
    (degrees [N]) feed a ground truth with a heading limit; ``*_sequences`` (int [N],
    :attr:`Traversal.sequence_ids`) restart the stream wherever the id changes."""
    place_map = PlaceMap.for_model(model)
    t0 = time.perf_counter()
    mapper = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    db_results = stream_sequences(mapper, *db, db_sequences)
    t1 = time.perf_counter()
    localizer = StreamingLocalizer(model, place_map,
                                   LocalizerConfig("localize", query_window or window,
                                                   top_k=max(ks)))
    results = stream_sequences(localizer, *query, query_sequences)
    t2 = time.perf_counter()
    if not results or not db_results:
        within = "" if db_sequences is None and query_sequences is None else " sequence"
        raise ValueError(f"window of {window.min_len} frames is longer than every{within} "
                         f"of a traversal ({len(db[1])} map / {len(query[1])} query frames)")
    ranked, q_windows = ranked_ids(results, max(ks)), frame_spans(results)
    db_windows = frame_spans(db_results)
    positives = {rule: window_positives(q_windows, db_windows, len(db[1]), gt.under(rule),
                                        query_positions, db_positions, query_headings,
                                        db_headings) for rule in RULES}
    return EvalResult(
        model=model.name, window=window, gt=gt,
        recalls={rule: recall_at_k(ranked, p, ks) for rule, p in positives.items()},
        n_db_windows=len(db_results), n_queries=len(results), ranked_ids=ranked,
        positives_by_rule=positives, query_windows=q_windows, db_windows=db_windows,
        timing_ms={"map_ms_per_window": 1000 * (t1 - t0) / len(db_results),
                   "localize_ms_per_window": 1000 * (t2 - t1) / len(results)},
        top_scores=ranked_scores(results, max(ks)),
        query_descriptors=np.stack([r.descriptor for r in results]),
        place_map=place_map,
    )


def stream_sequences(localizer: StreamingLocalizer, features: torch.Tensor,
                     infos: list[FrameInfo], sequences: np.ndarray | None = None
                     ) -> list[WindowResult]:
    """Push frames sequence by sequence, resetting the stream (not the map) at every
    start, so a window never holds frames of two recordings."""
    results: list[WindowResult] = []
    for start, stop in sequence_bounds(len(infos), sequences):
        localizer.reset()
        results += localizer.push_features(features[start:stop], infos[start:stop])
    return results


def ranked_ids(results: Sequence[WindowResult], k: int) -> np.ndarray:
    """Map ids of each window's matches, best first: int64 [Q, k], -1 padded."""
    ranked = np.full((len(results), k), -1, dtype=np.int64)
    for q, r in enumerate(results):
        ids = [m.keyframe_id for m in r.matches[:k]]
        ranked[q, :len(ids)] = ids
    return ranked


def ranked_scores(results: Sequence[WindowResult], k: int) -> np.ndarray:
    """Scores of each window's matches, best first: float [Q, k], -inf padded."""
    scores = np.full((len(results), k), -np.inf)
    for q, r in enumerate(results):
        values = [m.score for m in r.matches[:k]]
        scores[q, :len(values)] = values
    return scores


def frame_spans(results: Sequence[WindowResult]) -> np.ndarray:
    """(first, last) frame index covered by each window: int64 [W, 2]. Lowest and
    highest index, so a window streamed in reversed order covers the same frames."""
    return np.array([[min(f.index for f in r.frames), max(f.index for f in r.frames)]
                     for r in results], dtype=np.int64)
