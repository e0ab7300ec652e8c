"""Recall@K over retrieval results, in FAISS naming (I: [Q, k] ids)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_VALUES = (1, 5, 10, 20)


def recall_at_k(I: np.ndarray, positives: Sequence[np.ndarray],
                ks: Sequence[int] = RECALL_VALUES) -> dict[int, float]:
    """Fraction of queries with a true positive among their first K results.

    Queries without any positive in the database count as failures, as in the
    seq-VPR papers' evaluation code, so recall is never inflated by skipping them.
    """
    if len(I) != len(positives):
        raise ValueError(f"{len(I)} result rows but {len(positives)} positive lists")
    if len(I) == 0:
        raise ValueError("no queries to evaluate")
    first_hit = np.full(len(I), np.inf)
    for q, (row, pos) in enumerate(zip(I, positives, strict=True)):
        hits = np.flatnonzero(np.isin(row, pos))
        if hits.size:
            first_hit[q] = hits[0]
    return {k: float(np.mean(first_hit < k)) for k in ks}
