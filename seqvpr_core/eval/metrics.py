"""Metrics beyond Recall@K: precision-recall of the top match, timing and memory.

Precision-recall follows the loop-closure use: a query window is accepted when
its best match scores above a threshold; precision is the share of accepted
queries whose best match is correct, recall the share of all queries accepted
correctly. Sweeping the threshold over every score traces the curve; its area
(AUC, trapezoidal) summarises it, and the recall at 100 % precision is what a
SLAM back end can use without outlier rejection.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

from ..maps import PlaceMap


def precision_recall(top_scores: np.ndarray, top_ids: np.ndarray,
                     positives: Sequence[np.ndarray]) -> dict:
    """PR curve of the best match. ``top_scores``/``top_ids``: [Q] of each query's
    first result (higher score = more confident)."""
    correct = np.array([tid in pos for tid, pos in zip(top_ids, positives, strict=True)])
    order = np.argsort(-top_scores, kind="stable")
    tp = np.cumsum(correct[order])
    accepted = np.arange(1, len(order) + 1)
    precision = tp / accepted
    recall = tp / len(order)
    p = np.concatenate([[1.0], precision])
    r = np.concatenate([[0.0], recall])
    full = precision >= 1.0 - 1e-12
    return {"precision": p.tolist(), "recall": r.tolist(),
            "thresholds": top_scores[order].tolist(),
            "auc": float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2.0)),
            "recall_at_100_precision": float(recall[full].max()) if full.any() else 0.0}


def search_ms(place_map: PlaceMap, queries: np.ndarray, k: int, n: int = 200) -> float:
    """Mean wall time of one map search (one query descriptor at a time, as a robot does)."""
    queries = np.ascontiguousarray(queries[:n], dtype=np.float32)
    place_map.search(queries[:1], k)  # warm-up
    t0 = time.perf_counter()
    for q in queries:
        place_map.search(q[None], k)
    return 1000.0 * (time.perf_counter() - t0) / len(queries)


def aggregate_ms(model, features: torch.Tensor, length: int, n: int = 100) -> float:
    """Mean time to aggregate one window of cached frame features (batch of 1)."""
    windows = [features[i:i + length] for i in range(0, max(1, len(features) - length + 1))][:n]
    with torch.inference_mode():
        model.aggregate(windows[0][None])
        t0 = time.perf_counter()
        for w in windows:
            model.aggregate(w[None])
    if features.is_cuda:
        torch.cuda.synchronize()
    return 1000.0 * (time.perf_counter() - t0) / len(windows)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (and of the CUDA allocator when used)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 1024.0 / (1024.0 if sys.platform == "darwin" else 1.0)
    out = {"peak_rss_mb": rss_mb}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
