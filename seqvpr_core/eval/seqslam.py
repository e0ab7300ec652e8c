"""SeqSLAM-style sequence matching: a learning-free baseline over frame similarities.

Milford & Wyeth, "SeqSLAM: Visual route-based navigation for sunny summer days
and stormy winter nights", ICRA 2012; parameter values as in OpenSeqSLAM
(Suenderhauf, Neubert & Protzel 2013, ``defaultParameters.m``) unless
:data:`SEQSLAM_PARAMETERS` says otherwise. From the frame distance matrix D
(1 - cosine of the frame descriptors, queries x map), contrast enhancement
normalises each entry against the map frames around it (so a generally bland
query does not match everything), then every (query window, map window) pair
is scored by the best straight-line trajectory through D: the mean enhanced
distance along ``map = end - round(v * t)`` for the velocities v. Unlike a
descriptor, this needs the whole distance matrix; it is the classic reference
the learned sequence descriptors are measured against.
"""

from __future__ import annotations

import numpy as np
import torch

OPENSEQSLAM = ("OpenSeqSLAM defaultParameters.m (Suenderhauf et al. 2013), after Milford & "
               "Wyeth 2012")
# Every default, its value and where it comes from (reported by `seqvpr eval --seqslam`).
SEQSLAM_PARAMETERS: dict[str, dict] = {
    "sequence_length": {"value": "the eval window L",
                        "source": f"{OPENSEQSLAM}: matching.ds = 10, our default window"},
    "velocities": {"value": [0.8, 0.9, 1.0, 1.1, 1.2],
                   "source": f"{OPENSEQSLAM}: matching.vmin 0.8, vskip 0.1, vmax 1.2"},
    "contrast_radius": {"value": None,
                        "source": "chosen on Nordland frames 1-1600 (benchmarks/"
                                  "seqslam_defaults.py): None = standardise each query's "
                                  "distances over the whole map; OpenSeqSLAM's "
                                  "contrastEnhancement.R = 10 is radius 5"},
    "frame_distance": {"value": "1 - cosine of the model's L2-normalised frame features",
                       "source": "ours (OpenSeqSLAM: sum of absolute differences of "
                                 "patch-normalised pixels)"},
}
VELOCITIES = tuple(SEQSLAM_PARAMETERS["velocities"]["value"])
CONTRAST_RADIUS: int | None = SEQSLAM_PARAMETERS["contrast_radius"]["value"]


def enhance_contrast(d: np.ndarray, radius: int | None = CONTRAST_RADIUS) -> np.ndarray:
    """(D - local mean) / local std over a window of 2*radius+1 map frames, per query;
    ``radius=None``: over all map frames."""
    if radius is None:
        return (d - d.mean(1, keepdims=True)) / (d.std(1, keepdims=True) + 1e-6)
    n = d.shape[1]
    csum = np.concatenate([np.zeros((d.shape[0], 1)), np.cumsum(d, 1)], 1)
    csq = np.concatenate([np.zeros((d.shape[0], 1)), np.cumsum(d * d, 1)], 1)
    lo = np.clip(np.arange(n) - radius, 0, n)
    hi = np.clip(np.arange(n) + radius + 1, 0, n)
    cnt = hi - lo
    mean = (csum[:, hi] - csum[:, lo]) / cnt
    var = np.maximum((csq[:, hi] - csq[:, lo]) / cnt - mean**2, 0.0)
    return (d - mean) / (np.sqrt(var) + 1e-6)


def seqslam_rank(q_feats: torch.Tensor, db_feats: torch.Tensor, q_windows: np.ndarray,
                 db_windows: np.ndarray, k: int, velocities: tuple[float, ...] = VELOCITIES,
                 radius: int | None = CONTRAST_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Rank map windows for every query window by SeqSLAM trajectory score.

    Args:
        q_feats, db_feats: L2-normalised frame features [Nq, D], [Nd, D].
        q_windows, db_windows: int [W, 2] (first, last) frame spans of contiguous windows.
    Returns:
        (ids [Q, k] of map windows best first, scores [Q, k], higher is better).
    """
    q = q_feats.flatten(1).float()
    db = db_feats.flatten(1).float()
    d = (1.0 - q @ db.T).cpu().numpy().astype(np.float64)
    d = enhance_contrast(d, radius)
    # map window id by its last frame (windows of one traversal are contiguous, equal length)
    end_to_id = np.full(len(db_feats), -1, dtype=np.int64)
    end_to_id[db_windows[:, 1]] = np.arange(len(db_windows))
    ids = np.full((len(q_windows), k), -1, dtype=np.int64)
    scores = np.full((len(q_windows), k), -np.inf)
    ends = np.arange(len(db_feats))
    for w, (first, last) in enumerate(q_windows):
        length = last - first + 1
        t = np.arange(length)  # steps back from the window's newest frame
        best = np.full(len(db_feats), np.inf)
        for v in velocities:
            cols = ends[:, None] - np.round(v * t)[None].astype(np.int64)  # [Nd, L]
            valid = (cols >= 0).all(1)
            rows = last - t
            cost = np.full(len(db_feats), np.inf)
            cost[valid] = d[rows[None], cols[valid]].mean(1)
            best = np.minimum(best, cost)
        best_ids = end_to_id[ends]
        ok = (best_ids >= 0) & np.isfinite(best)
        cand, cost = best_ids[ok], best[ok]
        order = np.argsort(cost, kind="stable")[:k]
        ids[w, :len(order)] = cand[order]
        scores[w, :len(order)] = -cost[order]
    return ids, scores
