"""PCA / whitening as an optional last stage of a sequence model.

Jégou & Chum, "Negative evidences and co-occurrences in image retrieval: the
benefit of PCA and whitening", ECCV 2012: projecting onto the leading
principal components and dividing by their standard deviation shrinks
descriptors (e.g. 24576-d SeqVLAD to 4096 or 512) and usually improves
retrieval. Learned from descriptors, stored as buffers so it travels in the
checkpoint and in the model fingerprint.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import l2n


class PCAWhitening(nn.Module):
    """[B, D] -> L2-normalised [B, dim]; must be fitted before use."""

    def __init__(self, in_dim: int, dim: int, whiten: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if not 1 <= dim <= in_dim:
            raise ValueError(f"pca dim must be 1..{in_dim} (the aggregator's output), got {dim}")
        self.in_dim, self.dim, self.whiten, self.eps = in_dim, dim, whiten, eps
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("components", torch.zeros(dim, in_dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("fitted", torch.tensor(False))
        self._ready = False  # host copy of ``fitted``: no device sync per window

    @torch.no_grad()
    def fit(self, descriptors: torch.Tensor) -> None:
        """Learn the projection from descriptors [N, D] (N >= dim)."""
        x = descriptors.detach().to(self.mean.device, torch.float64)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"pca needs descriptors [N, {self.in_dim}], got {tuple(x.shape)}")
        if len(x) < self.dim:
            raise ValueError(f"pca to {self.dim} dims needs at least {self.dim} descriptors, "
                             f"got {len(x)}")
        mean = x.mean(0)
        _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
        std = s[: self.dim] / max(len(x) - 1, 1) ** 0.5
        self.mean.copy_(mean)
        self.components.copy_(vh[: self.dim])
        self.scale.copy_(1.0 / (std + self.eps) if self.whiten else torch.ones_like(std))
        self.fitted.fill_(True)
        self._ready = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready = bool(self.fitted)  # one sync when a checkpoint loads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._ready:
            raise RuntimeError("the PCA stage is not fitted yet; call model.fit_pca(descriptors) "
                               "with raw aggregator outputs (model.aggregate_raw) first")
        y = (x - self.mean.to(x.dtype)) @ self.components.to(x.dtype).T
        return l2n(y * self.scale.to(x.dtype))
