"""Validation Recall@K through the same evaluation path as ``seqvpr eval``.

Frames of the validation pairs come from the feature cache (frozen encoder) or
are encoded once per validation; windows are streamed through the localizer by
:func:`seqvpr_core.eval.evaluate`, so the number early stopping watches is the
number a user would measure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data.pairs import TraversalPair
from ..eval import evaluate
from ..eval.evaluate import encode_traversal
from ..models import SequenceModel
from ..stream import FrameInfo, WindowConfig
from .config import TrainConfig
from .samples import ground_truths


def validate(model: SequenceModel, pairs: list[TraversalPair], cfg: TrainConfig,
             features: Callable[[int], dict[str, np.ndarray] | None]) -> dict[str, float]:
    """Recall@{1,5,10,20} over all validation query windows (pooled across pairs)."""
    _, gt = ground_truths(cfg.ground_truth)
    window = WindowConfig.fixed(cfg.window.length, cfg.val_windows_stride)
    hits: dict[int, float] = {}
    total = 0
    for i, pair in enumerate(pairs):
        cached = features(i)
        encoded = []
        for side in ("db", "query"):
            t = getattr(pair, side)
            if cached is not None:
                with torch.inference_mode():  # cached encoder outputs -> frame features
                    feats = model.apply_head(torch.from_numpy(np.array(cached[side]))
                                             .to(model.device, model.dtype))
                infos = [FrameInfo(j, int(t.stamps_ns[j]), t.paths[j].name, t.pose(j), t.name)
                         for j in range(len(t))]
            else:
                feats, infos, _ = encode_traversal(model, t, cfg.batch_size_encode, False)
            encoded.append((feats, infos))
        r = evaluate(model, encoded[0], encoded[1], window, gt,
                     db_positions=pair.db.positions, query_positions=pair.query.positions,
                     db_headings=pair.db.headings, query_headings=pair.query.headings,
                     db_sequences=pair.db.sequence_ids,
                     query_sequences=pair.query.sequence_ids)
        for k, v in r.recall.items():
            hits[k] = hits.get(k, 0.0) + v * r.n_queries
        total += r.n_queries
    return {str(k): v / total for k, v in hits.items()}
