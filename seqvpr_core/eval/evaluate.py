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
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm import tqdm

from ..data import Traversal
from ..data.windows import sequence_bounds
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
    top_scores: np.ndarray | None = None  # float [Q, k] match scores, best first
    query_descriptors: np.ndarray | None = None  # float32 [Q, D]
    place_map: PlaceMap | None = None  # the map built from the database windows


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
    """Recall@K of ``model`` on pre-encoded (features, infos) of both traversals.

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
    positives = window_positives(q_windows, db_windows, len(db[1]), gt,
                                 query_positions, db_positions, query_headings, db_headings)
    return EvalResult(
        model=model.name, window=window, recall=recall_at_k(ranked, positives, ks),
        n_db_windows=len(db_results), n_queries=len(results), ranked_ids=ranked,
        positives=positives, query_windows=q_windows, db_windows=db_windows,
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


def evaluate_report(model: SequenceModel, db: Traversal, query: Traversal,
                    window: WindowConfig, gt: GroundTruth, single_frame: bool = True,
                    ks: Sequence[int] = RECALL_VALUES, batch_size: int = 32,
                    progress: bool = True, window_sweep: Sequence[int] = (),
                    reverse: bool = False, seqslam: bool = False,
                    baselines: Sequence[str] = ()) -> tuple[dict, dict[str, EvalResult]]:
    """The report of ``seqvpr eval`` (JSON-ready) and the :class:`EvalResult` of
    every run by name (for figures): sequence recall, and single-frame recall of the
    same encoder on the same cached features as the reference.

    Args:
        window_sweep: also evaluate these test-time window lengths (variable-length
            aggregators only; fixed-length models are trained for one length).
        reverse: also stream every query window in reversed frame order.
        seqslam: add SeqSLAM-style sequence matching on the same frame features.
        baselines: learning-free aggregators (``delta``) to stream on the same cached
            frame features and windows, reported as ``<name>_recall``.
    """
    from .metrics import aggregate_ms, peak_memory_mb, precision_recall, search_ms

    others = {name: model.with_aggregator(name) for name in baselines}  # refused before encoding
    db_enc, q_enc = (encode_traversal(model, t, batch_size, progress) for t in (db, query))
    q_in = (*q_enc[:2], query.sequence_ids)  # (features, infos, sequence ids)
    runs = {"sequence": (model, window, q_in, None)}
    if single_frame:
        runs["single_frame"] = (model.with_aggregator("none"), WindowConfig.fixed(1), q_in, None)
    runs.update({name: (other, window, q_in, None) for name, other in others.items()})
    if reverse:
        blocks = WindowConfig.fixed(window.max_len, window.max_len)  # one window per block
        runs["forward_blocks"] = (model, window, q_in, blocks)
        runs["reversed"] = (model, window, _reversed_windows(q_in, window), blocks)
    for length in window_sweep:
        if model.variable_length and length != window.max_len:
            runs[f"window_{length}"] = (model, WindowConfig.fixed(length, window.stride),
                                        q_in, None)
    encode_ms = (db_enc[2] * len(db) + q_enc[2] * len(query)) / (len(db) + len(query))
    report: dict = {
        "model": model.name,
        "model_config": model.config,
        "descriptor_dim": model.descriptor_dim,
        "window": {"min_len": window.min_len, "max_len": window.max_len,
                   "stride": window.stride},
        "ground_truth": gt.describe(),
        "db": _describe(db),
        "query": _describe(query),
        "timing_ms": {"encode_per_frame": encode_ms},
        "pr": {},
    }
    results: dict[str, EvalResult] = {}
    for key, (m, w, (q_feats, q_infos, q_seqs), q_w) in runs.items():
        r = evaluate(m, db_enc[:2], (q_feats, q_infos), w, gt, ks, db.positions,
                     query.positions, q_w, db_headings=db.headings,
                     query_headings=query.headings, db_sequences=db.sequence_ids,
                     query_sequences=q_seqs)
        results[key] = r
        prefix = "" if key == "sequence" else f"{key}_"
        report[f"{prefix}recall"] = {str(k): v for k, v in r.recall.items()}
        report[f"{prefix}queries"] = r.n_queries
        if key in ("sequence", "single_frame", *others):
            report["timing_ms"].update({f"{prefix}{k}": v for k, v in r.timing_ms.items()})
            report["pr"][key] = precision_recall(r.top_scores[:, 0], r.ranked_ids[:, 0],
                                                 r.positives)
    if window_sweep:
        report["window_sweep"] = {str(w.max_len): report[f"{k}_recall"]
                                  for k, (_, w, _, _) in runs.items() if k.startswith("window_")}
        report["window_sweep"][str(window.max_len)] = report["recall"]
    seq = results["sequence"]
    agg = aggregate_ms(model, db_enc[0], window.max_len)
    report["timing_ms"].update({
        "aggregate_per_window": agg,
        "extract_per_window": window.max_len * encode_ms + agg,  # a window from scratch
        "extract_per_new_frame": encode_ms + agg,  # streaming: one new frame, re-aggregate
        "search_per_query": search_ms(seq.place_map, seq.query_descriptors, max(ks)),
    })
    if seqslam:
        from .seqslam import seqslam_rank

        ranked, scores = seqslam_rank(q_enc[0], db_enc[0], seq.query_windows, seq.db_windows,
                                      max(ks))
        report["seqslam_recall"] = {str(k): v for k, v in
                                    recall_at_k(ranked, seq.positives, ks).items()}
        report["pr"]["seqslam"] = precision_recall(scores[:, 0], ranked[:, 0], seq.positives)
    report["memory_mb"] = peak_memory_mb(model.device)
    return report, results


def _describe(t: Traversal) -> dict:
    out: dict = {"name": t.name, "frames": len(t)}
    if t.sequence_ids is not None:
        out["sequences"] = len(sequence_bounds(len(t), t.sequence_ids))
    return out


def _reversed_windows(encoded: tuple[torch.Tensor, list[FrameInfo], np.ndarray | None],
                      window: WindowConfig
                      ) -> tuple[torch.Tensor, list[FrameInfo], np.ndarray | None]:
    """Query frames re-ordered so every full window is streamed newest-first.

    Blocks of ``max_len`` frames (cut in every sequence separately) are each
    reversed, and windows with stride = ``max_len`` are taken on them, so each
    evaluated window holds the same frames as a forward window, in the opposite
    order. Stamps keep running forward, as for a robot driving the route backwards
    (the stream restarts its windows when time goes back).
    """
    feats, infos, sequences = encoded
    blocks = []
    for start, stop in sequence_bounds(len(infos), sequences):
        n = (stop - start) - (stop - start) % window.max_len
        blocks.append(start + np.arange(n).reshape(-1, window.max_len)[:, ::-1].reshape(-1))
    order = np.concatenate(blocks or [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    forward = np.sort(order)
    return (feats[torch.from_numpy(order.copy())],
            [replace(infos[i], stamp_ns=infos[j].stamp_ns) for i, j in zip(order, forward,
                                                                        strict=True)],
            None if sequences is None else np.asarray(sequences)[order])
