"""Learning-free baselines that ``seqvpr eval`` runs beside the model, on the model's
own frame features: one table, one ``seqvpr eval --NAME`` flag per entry.

A baseline is either a matcher, which ranks map windows for every query window
from the cached frame features of both traversals, ``rank(q_feats [Nq, ...],
db_feats [Nd, ...], q_windows [Q, 2], db_windows [W, 2], k) -> (ids [Q, k],
scores [Q, k])``, best first, higher score = more confident; or a learning-free
``aggregator`` that replaces the model's and streams the same windows through
the same path. Either way recall and precision-recall are scored exactly as the
model's own matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .seqslam import SEQSLAM_PARAMETERS, seqslam_rank

Rank = Callable[[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, int],
                tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Baseline:
    """One entry; its ``--NAME`` flag and help live in :data:`seqvpr_core.catalog.
    EVAL_BASELINES`, so ``seqvpr eval --help`` needs no torch."""

    label: str  # in printouts, plots and the report
    rank: Rank | None = None  # a matcher over the frame features ...
    aggregator: str | None = None  # ... or a registered learning-free aggregator
    parameters: dict[str, dict] = field(default_factory=dict)  # name -> {value, source}


BASELINES: dict[str, Baseline] = {
    "seqslam": Baseline("SeqSLAM", rank=seqslam_rank, parameters=SEQSLAM_PARAMETERS),
    "delta": Baseline("delta descriptors", aggregator="delta"),
}
