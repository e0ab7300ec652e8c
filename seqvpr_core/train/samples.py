"""Training windows of every (map, query) pair, their positives and their soft negatives.

For each pair: map and query windows (length, stride, optional distance
spacing), the positives of every query window under the training ground truth
(``pos_*``: e.g. 10 m, under the configured rule), and the map windows that the
evaluation criterion (``eval_*``: e.g. 25 m) accepts under the seq2seq rule.
Those are never used as negatives: a window between the two radii, or one that
overlaps the query's place without ending where it ends, is neither a positive
nor a negative.
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
from .config import AugmentConfig, GroundTruthSpec, WindowSpec


def ground_truths(spec: GroundTruthSpec) -> tuple[GroundTruth, GroundTruth]:
    """(training positives, validation) ground truths, both under ``spec.rule``."""
    pos = GroundTruth(tolerance=spec.pos_tolerance, radius=spec.pos_radius,
                      max_heading_deg=spec.max_heading_deg, rule=spec.rule)
    ev = GroundTruth(tolerance=spec.eval_tolerance, radius=spec.eval_radius,
                     max_heading_deg=spec.max_heading_deg, rule=spec.rule)
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
    # soft negatives: whatever the evaluation criterion accepts under the broadest
    # rule, so a window overlapping the query's place is never pushed away
    return PairWindows(pair, dbw, qw, window_positives(*args, pos_gt, **kw),
                       window_positives(*args, eval_gt.under("seq2seq"), **kw))


class WindowInputs:
    """Model input for windows of one pair: cached features (frozen encoder) or
    preprocessed clips [n, L, 3, H, W] decoded from the image files.

    Given a generator (training steps; never mining or validation) and an
    augmentation, each frame is an augmented version with probability
    ``1 - keep_clean``: one of the cached augmented copies (frozen encoder) or
    augmented on the fly from the image."""

    def __init__(self, model: SequenceModel, features: dict[str, np.ndarray] | None,
                 pair: TraversalPair, augment: AugmentConfig | None = None,
                 augmented: dict[str, list[np.ndarray]] | None = None) -> None:
        self.model, self.features, self.pair = model, features, pair
        self.augment, self.augmented = augment, augmented

    def __call__(self, side: str, windows: np.ndarray, device: torch.device,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
        ids = windows.reshape(-1)
        mixed = rng is not None and self.augment is not None and self.augment.copies > 0
        # per frame: -1 = the clean frame, c >= 0 = augmented copy c
        copy = np.where(rng.random(len(ids)) < self.augment.keep_clean, -1,
                        rng.integers(0, self.augment.copies, len(ids))) if mixed \
            else np.full(len(ids), -1)
        if self.features is not None:
            flat = np.array(self.features[side][ids])
            for c in np.unique(copy[copy >= 0]):
                flat[copy == c] = self.augmented[side][c][ids[copy == c]]
            x = torch.from_numpy(flat).to(device)
        else:
            from ..data.images import read_image
            from .augment import augment_frame

            t = self.pair.db if side == "db" else self.pair.query
            frames = [read_image(t.paths[i]) for i in ids]
            if mixed:
                frames = [f if c < 0 else augment_frame(f, self.augment, rng)
                          for f, c in zip(frames, copy, strict=True)]
            x = self.model.preprocess(frames)
        return x.unflatten(0, windows.shape)
