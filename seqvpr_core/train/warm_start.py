"""Where a training run starts, from the training frames themselves: a per-frame head
as the identity (the run starts as the model without it, e.g. the untrained cat
preset) or as the PCA of the frames' features, and NetVLAD/SeqVLAD centres from
k-means (as SeqVLAD initialises them). Every draw is seeded, so every DDP rank and
every resumed run starts from the same weights.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.pairs import TraversalPair
from ..models import SequenceModel


def encoder_sample(model: SequenceModel, pair: TraversalPair,
                   features: dict[str, np.ndarray] | None, seed: int, n: int = 500,
                   sides: tuple[str, ...] = ("db",)) -> torch.Tensor:
    """Encoder outputs (before the head) of up to ``n`` frames of each of ``sides``:
    from the feature cache (frozen encoder) or encoded from the image files."""
    rng = np.random.default_rng([seed, 7])
    parts = []
    for side in sides:
        t = getattr(pair, side)
        ids = np.sort(rng.choice(len(t), size=min(len(t), n), replace=False))
        if features is not None:
            parts.append(torch.from_numpy(np.array(features[side][ids])))
        else:
            from ..data.images import read_image
            parts.append(model.encode_backbone_frames(
                [read_image(t.paths[i]) for i in ids]).float().cpu())
    return torch.cat(parts)


def init_head(model: SequenceModel, how: str, pair: TraversalPair,
              features: dict[str, np.ndarray] | None, seed: int) -> None:
    """Set the head's weights as ``how`` says (``random`` leaves torch's init)."""
    if how == "random":
        return
    if model.head is None:
        raise ValueError(f"head_init: {how} needs a model with a head: {{dim: N}}")
    fc = model.head.fc
    with torch.no_grad():
        if how == "identity":
            if fc.in_features != fc.out_features:
                raise ValueError(f"head_init: identity needs head dim = encoder dim "
                                 f"({fc.in_features}), got {fc.out_features}")
            fc.weight.copy_(torch.eye(fc.in_features))
            fc.bias.zero_()
            return
        x = encoder_sample(model, pair, features, seed, len(pair.db), ("db", "query"))
        x = x.flatten(0, -2).double()  # token encoders: every token is a sample
        if fc.out_features > min(x.shape):
            raise ValueError(f"head_init: pca of {len(x)} frames gives at most "
                             f"{min(x.shape)} directions, head dim is {fc.out_features}")
        mean = x.mean(0)
        _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
        w = vt[:fc.out_features]
        fc.weight.copy_(w.to(fc.weight.dtype))
        fc.bias.copy_((-w @ mean).to(fc.bias.dtype))


def init_aggregator(model: SequenceModel, pair: TraversalPair,
                    features: dict[str, np.ndarray] | None, seed: int,
                    device: torch.device) -> None:
    """SeqVLAD/NetVLAD centres from k-means on training frame features (after the head)."""
    init = getattr(model.aggregator, "init_from_features", None)
    if init is None:
        return
    with torch.no_grad():
        sample = model.apply_head(encoder_sample(model, pair, features, seed).to(device))
    init(sample, seed=seed)
