"""Hard-negative mining from a cached pool (NetVLAD / SeqVLAD / STformer protocol).

Every ``refresh`` queries, descriptors are recomputed with the current model
(no gradients) for the next queries, all their positives and a pool of
``pool`` random map windows of each pair. Each query then trains with its best
positive (closest in descriptor space) and the ``negatives`` hardest pool
windows (closest), skipping soft negatives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .config import MiningConfig
from .samples import PairWindows

Query = tuple[int, int]  # (pair index, query window index)
Describe = Callable[[int, str, np.ndarray], torch.Tensor]  # (pair, side, window ids) -> [n, D]


class MinedCache:
    """Descriptors of one refresh: the chunk's queries, positives and negative pools."""

    def __init__(self, data: list[PairWindows], queries: list[Query], cfg: MiningConfig,
                 rng: np.random.Generator, describe: Describe) -> None:
        self.data, self.cfg = data, cfg
        self.q_desc: dict[Query, torch.Tensor] = {}
        self.db_ids: dict[int, np.ndarray] = {}
        self.db_desc: dict[int, torch.Tensor] = {}
        self.in_pool: dict[int, np.ndarray] = {}  # per pair: which cached ids are pool windows
        for p in sorted({p for p, _ in queries}):
            pw = data[p]
            n_db = len(pw.db_windows)
            pool = rng.choice(n_db, size=min(cfg.pool, n_db), replace=False)
            mine = [q for pp, q in queries if pp == p]
            pos = np.concatenate([pw.positives[q] for q in mine])
            ids = np.unique(np.concatenate([pool, pos]))
            self.db_ids[p] = ids
            self.db_desc[p] = describe(p, "db", pw.db_windows[ids])
            qd = describe(p, "query", pw.q_windows[np.asarray(mine)])
            for q, d in zip(mine, qd, strict=True):
                self.q_desc[(p, q)] = d
            self.in_pool[p] = np.isin(ids, pool)

    def select(self, query: Query) -> tuple[int, np.ndarray]:
        """(best positive, hardest negatives) map window ids of one query."""
        p, q = query
        pw, ids, desc = self.data[p], self.db_ids[p], self.db_desc[p]
        # closeness = -squared L2 distance: the triplet loss's distance, and for unit
        # descriptors the same order as their inner product
        sims = -(desc - self.q_desc[query]).pow(2).sum(-1).cpu().numpy()
        is_pos = np.isin(ids, pw.positives[q])
        best = int(ids[np.flatnonzero(is_pos)[np.argmax(sims[is_pos])]])
        candidates = np.flatnonzero(self.in_pool[p] & ~np.isin(ids, pw.near[q]))
        if len(candidates) < self.cfg.negatives:
            raise ValueError(f"pair {pw.pair.name}: only {len(candidates)} negatives in the "
                             f"pool for a query, need {self.cfg.negatives}; the map is too "
                             "small for this ground truth")
        hardest = candidates[np.argsort(-sims[candidates], kind="stable")[:self.cfg.negatives]]
        return best, ids[hardest]
