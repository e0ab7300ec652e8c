"""Training windows of every (map, query) pair, their positives and their soft negatives.

For each pair: map and query windows (length, stride, optional distance
spacing), the positives of every query window under the training ground truth
(``pos_*``: e.g. 10 m), and the map windows that the evaluation ground truth
(``eval_*``: e.g. 25 m) would accept. Those are never used as negatives: a
window between the two radii is neither a positive nor a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import Traversal
from ..data.pairs import TraversalPair
from ..data.windows import make_windows, window_spans
from ..eval import GroundTruth, window_positives
from ..models import SequenceModel
from .config import GroundTruthSpec, WindowSpec


def ground_truths(spec: GroundTruthSpec) -> tuple[GroundTruth, GroundTruth]:
    """(training positives, evaluation / soft-negative) ground truths."""
    pos = GroundTruth(tolerance=spec.pos_tolerance, radius=spec.pos_radius,
                      max_heading_deg=spec.max_heading_deg)
    ev = GroundTruth(tolerance=spec.eval_tolerance, radius=spec.eval_radius,
                     max_heading_deg=spec.max_heading_deg)
    return pos, ev


@dataclass
class PairWindows:
    pair: TraversalPair
    db_windows: np.ndarray  # int64 [Wd, L] frame indices
    q_windows: np.ndarray  # int64 [Wq, L]
    positives: list[np.ndarray]  # per query window: map window ids
    near: list[np.ndarray]  # per query window: map window ids never used as negatives


def build_pair_windows(pair: TraversalPair, window: WindowSpec, spec: GroundTruthSpec
                       ) -> PairWindows:
    pos_gt, eval_gt = ground_truths(spec)

    def windows(t: Traversal) -> np.ndarray:
        return make_windows(len(t), window.length, window.stride, t.positions, window.spacing_m,
                            t.sequence_ids)

    dbw, qw = windows(pair.db), windows(pair.query)
    if not len(dbw) or not len(qw):
        raise ValueError(f"pair {pair.name}: no window of {window.length} frames fits "
                         f"({len(pair.db)} map / {len(pair.query)} query frames)")
    args = (window_spans(qw), window_spans(dbw), len(pair.db))
    kw = dict(query_positions=pair.query.positions, db_positions=pair.db.positions,
              query_headings=pair.query.headings, db_headings=pair.db.headings)
    return PairWindows(pair, dbw, qw, window_positives(*args, pos_gt, **kw),
                       window_positives(*args, eval_gt, **kw))


class WindowInputs:
    """Model input for windows of one pair: cached features (frozen encoder) or
    preprocessed clips [n, L, 3, H, W] decoded from the image files."""

    def __init__(self, model: SequenceModel, features: dict[str, np.ndarray] | None,
                 pair: TraversalPair) -> None:
        self.model, self.features, self.pair = model, features, pair

    def __call__(self, side: str, windows: np.ndarray, device: torch.device) -> torch.Tensor:
        if self.features is not None:
            flat = np.array(self.features[side][windows.reshape(-1)])
            x = torch.from_numpy(flat).to(device)
        else:
            from ..data.images import read_image

            t = self.pair.db if side == "db" else self.pair.query
            x = self.model.preprocess([read_image(t.paths[i]) for i in windows.reshape(-1)])
        return x.unflatten(0, windows.shape)
